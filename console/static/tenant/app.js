// The console shell: sign-in, then one page at a time by URL fragment (#playground, #knowledge,
// #usage, #speech). The key lives in sessionStorage only; the fragment never holds it.
import {h, clear} from './common/dom.js';
import {creds, setCreds, signOut, get} from './api.js';
import {errorBanner} from './ui.js';
import * as playground from './playground.js';
import * as knowledge from './knowledge.js';
import * as usage from './usage.js';
import * as speech from './speech.js';

const pages = {playground, knowledge, usage, speech};
const main = document.getElementById('main');
const tabs = document.getElementById('tabs');
const who = document.getElementById('who');
let health = null;
let cleanup = null;

function signInPage(problem) {
  const tenant = h('input', {type: 'text', id: 'tenant-id', name: 'tenant', autocomplete: 'organization', spellcheck: 'false',
    placeholder: 'e.g. mrrainbowsmoke'});
  const key = h('input', {type: 'password', id: 'api-key', name: 'key', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'ck_…'});
  const status = h('div', {role: 'alert'});
  if (problem) status.append(errorBanner(problem));
  const form = h('form', {class: 'card signin', id: 'signin', 'aria-labelledby': 'signin-h'},
    h('h2', {id: 'signin-h'}, 'Sign in'),
    h('p', {class: 'muted'}, 'Use your tenant\'s API key. A public tenant needs only its tenant ID. The key stays in this tab\'s session storage and is sent in a header, never in a URL.'),
    h('label', {for: 'tenant-id'}, 'Tenant ID (optional with a key)'), tenant,
    h('label', {for: 'api-key'}, 'API key (optional for a public tenant)'), key,
    h('div', {class: 'row composer'}, h('button', {type: 'submit', id: 'signin-btn'}, 'Sign in')),
    status);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const c = {tenantId: tenant.value.trim(), key: key.value.trim()};
    if (!c.tenantId && !c.key) {
      clear(status, errorBanner('Enter a tenant ID, an API key, or both.'));
      return;
    }
    setCreds(c);
    try {
      health = await get('/health');
      setCreds({...c, tenantId: health.tenantId});
      route();
    } catch (err) {
      signOut();
      clear(status, errorBanner(err));
    }
  });
  tabs.hidden = true;
  clear(who);
  clear(main, form);
  tenant.focus();
}

function shell() {
  tabs.hidden = false;
  const out = h('button', {type: 'button', class: 'secondary', id: 'signout'}, 'Sign out');
  out.addEventListener('click', () => { signOut(); health = null; location.hash = ''; signInPage(); });
  clear(who, h('span', {id: 'tenant-name'}, 'Tenant ', h('strong', {}, health.tenantId)), out);
}

async function route() {
  if (!creds()) return signInPage();
  if (!health) {
    try { health = await get('/health'); } catch (err) { signOut(); return signInPage(err); }
  }
  shell();
  const name = (location.hash || '#playground').slice(1);
  const page = pages[name] ? name : 'playground';
  for (const a of tabs.querySelectorAll('a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (cleanup) { try { cleanup(); } catch { /* page gone */ } cleanup = null; }
  clear(main);
  document.title = `${page[0].toUpperCase() + page.slice(1)} · crispy console`;
  cleanup = pages[page].render(main, {health}) || null;
  main.focus({preventScroll: true});
}

window.addEventListener('hashchange', route);
route();
