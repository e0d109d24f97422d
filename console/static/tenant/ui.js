import {h} from './common/dom.js';
import {ApiError} from './api.js';

// errorBanner shows an error as the envelope's message, with its code and trace ID for support.
export function errorBanner(err) {
  const msg = err instanceof ApiError
    ? `${err.message} (${err.code}${err.traceId ? ', trace ' + err.traceId : ''})`
    : String((err && err.message) || err);
  return h('div', {class: 'banner-error', role: 'alert'}, msg);
}

// citeLinks renders text with its [n] markers as links to the passages #<prefix>-<n> that exist.
export function citeLinks(text, prefix, known) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(/\[(\d{1,2})\]/g)) {
    const n = Number(m[1]);
    if (!known.has(n)) continue;
    out.push(text.slice(last, m.index));
    out.push(h('a', {class: 'cite', href: `#${prefix}-${n}`, 'aria-label': `source ${n}`,
      onclick: (ev) => { ev.preventDefault(); const el = document.getElementById(`${prefix}-${n}`); if (el) { el.scrollIntoView({block: 'nearest'}); el.focus(); } }},
    `[${n}]`));
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out;
}

// sourceList renders search sources as passages with ids <prefix>-<n> (1-based), scores and text.
export function sourceList(sources, prefix) {
  return h('ol', {class: 'sources', 'aria-label': 'Sources'}, sources.map((s, i) => h('li', {id: `${prefix}-${i + 1}`, tabindex: '-1'},
    h('strong', {}, `[${i + 1}] `),
    s.url ? h('a', {href: s.url, rel: 'noopener noreferrer', target: '_blank'}, s.title || s.docId) : h('span', {}, s.title || s.docId),
    ' ', h('span', {class: 'score'}, `doc ${s.docId} · chunk ${s.chunkId} · score ${Number(s.score).toFixed(3)}`),
    h('div', {}, s.text))));
}
