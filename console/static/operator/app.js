// The operator view: polls /operator/api/overview (admin listener only) and shows members, grains
// per kind per member, JetStream streams with leaders and replicas, ledger projector lag and
// per-tenant request/error/latency charts. The charts are rates between polls of the Prometheus
// counters, kept in this page only (the last MAX_POINTS polls).
import {h, clear, fmtInt, fmtNum, fmtBytes, fmtTime, table} from './common/dom.js';
import {lineChart} from './common/chart.js';

const TOKEN = 'crispy.operator.token';
const MAX_POINTS = 120;
const MAX_TENANTS = 8;
const main = document.getElementById('main');
const who = document.getElementById('who');
let timer = null;
let prev = null;
const history = []; // [{t, tenants: {id: {rps, eps, p95}}}]

function errorBanner(msg) { return h('div', {class: 'banner-error', role: 'alert'}, msg); }

async function fetchOverview() {
  const headers = {};
  const tok = sessionStorage.getItem(TOKEN);
  if (tok) headers.authorization = 'Bearer ' + tok;
  const res = await fetch('api/overview', {headers, cache: 'no-store', credentials: 'omit'});
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const e = new Error(body?.error?.message || `HTTP ${res.status}`);
    e.status = res.status;
    throw e;
  }
  return body;
}

// quantile of the requests between two cumulative histograms (upper bounds in seconds).
function quantile(q, bounds, now, before) {
  const counts = now.map((c, i) => c - (before?.[i] || 0));
  const total = counts[counts.length - 1] ?? 0;
  if (!(total > 0)) return null;
  const want = q * total;
  for (let i = 0; i < counts.length; i++) if (counts[i] >= want) return bounds[i];
  return bounds[bounds.length - 1];
}

function sample(o) {
  const t = Date.parse(o.time);
  const point = {t, tenants: {}};
  if (prev) {
    const dt = (t - prev.t) / 1000;
    for (const ts of o.tenants) {
      const p = prev.by[ts.tenant];
      if (!p || dt <= 0) continue;
      point.tenants[ts.tenant] = {
        rps: (ts.requests - p.requests) / dt,
        eps: (ts.serverErrors + ts.clientErrors - p.serverErrors - p.clientErrors) / dt,
        p95: quantile(0.95, ts.bucketBounds, ts.bucketCounts, p.bucketCounts),
      };
    }
    history.push(point);
    if (history.length > MAX_POINTS) history.shift();
  }
  prev = {t, by: Object.fromEntries(o.tenants.map((ts) => [ts.tenant, ts]))};
}

function tenantCharts(o) {
  const busiest = [...o.tenants].sort((a, b) => b.requests - a.requests).slice(0, MAX_TENANTS).map((ts) => ts.tenant);
  const x = history.map((p) => p.t);
  const series = (f) => busiest.map((id) => ({name: id || '(no tenant)', values: history.map((p) => p.tenants[id] ? f(p.tenants[id]) : null)}));
  if (history.length < 2) return h('p', {class: 'muted'}, 'Collecting: the charts are rates between refreshes and need a few of them.');
  return h('div', {class: 'grid2'},
    lineChart({title: 'Requests per second', id: 'chart-rps', x, series: series((v) => v.rps), format: (v) => fmtNum(v, 2)}),
    lineChart({title: 'Errors (4xx + 5xx) per second', id: 'chart-eps', x, series: series((v) => v.eps), format: (v) => fmtNum(v, 2)}),
    lineChart({title: 'Latency p95 (ms, bucket bound)', id: 'chart-p95', x, series: series((v) => (v.p95 === null ? null : v.p95 * 1000)), format: (v) => fmtNum(v, 1)}));
}

function render(o) {
  sample(o);
  const kinds = [...new Set(o.grains.flatMap((g) => Object.keys(g.kinds || {})))].sort();
  const memberName = (addr) => o.grains.find((g) => g.member === addr)?.node || '';
  clear(document.getElementById('content'),
    o.errors?.length ? o.errors.map(errorBanner) : null,
    h('section', {class: 'panel', 'aria-labelledby': 'members-h'}, h('h2', {id: 'members-h'}, `Members (${o.members.length})`),
      table('Cluster members as this node sees them', [
        {label: 'Address', value: (m) => m.address + (m.self ? ' (this node)' : '')},
        {label: 'Node', value: (m) => memberName(m.address)},
        {label: 'State', value: (m) => h('span', {class: 'pill ' + (m.state === 'up' ? 'up' : 'down')}, m.state)},
        {label: 'Kinds', value: (m) => (m.kinds || []).join(', ')},
        {label: 'Member ID', value: (m) => m.id},
      ], o.members, 'No members.')),
    h('section', {class: 'panel', 'aria-labelledby': 'grains-h'}, h('h2', {id: 'grains-h'}, 'Grain activations'),
      table('Activations per kind per member', [
        {label: 'Member', value: (g) => `${g.node} (${g.member})`},
        ...kinds.map((k) => ({label: k, num: true, value: (g) => fmtInt(g.kinds?.[k])})),
        {label: 'Total', num: true, value: (g) => fmtInt(Object.values(g.kinds || {}).reduce((a, b) => a + b, 0))},
      ], o.grains, 'No member reported its grains.')),
    h('section', {class: 'panel', 'aria-labelledby': 'streams-h'}, h('h2', {id: 'streams-h'}, `JetStream streams (${o.streams.length})`),
      table('Streams, KV buckets and object stores', [
        {label: 'Stream', value: (s) => s.name},
        {label: 'Replicas', num: true, value: (s) => s.replicas},
        {label: 'Leader', value: (s) => s.leader || '—'},
        {label: 'Other replicas', value: (s) => s.peers.length ? s.peers.map((p) => `${p.name}${p.current ? '' : ' (behind ' + p.lag + ')'}${p.offline ? ' offline' : ''}`).join(', ') : '—'},
        {label: 'Messages', num: true, value: (s) => fmtInt(s.messages)},
        {label: 'Size', num: true, value: (s) => fmtBytes(s.bytes)},
      ], o.streams, 'No streams.')),
    h('section', {class: 'panel', 'aria-labelledby': 'proj-h'}, h('h2', {id: 'proj-h'}, 'Ledger projectors'),
      table('Each node projects LEDGER into its SQLite read models', [
        {label: 'Consumer', value: (p) => p.consumer},
        {label: 'Lag (events)', num: true, value: (p) => fmtInt(p.lag)},
        {label: 'Delivered / last', num: true, value: (p) => `${fmtInt(p.delivered)} / ${fmtInt(p.lastSeq)}`},
        {label: 'Redelivered', num: true, value: (p) => fmtInt(p.redelivered)},
        {label: 'Last delivery', value: (p) => fmtTime(p.lastActive)},
      ], o.projectors, 'No projector consumers.')),
    h('section', {class: 'panel', 'aria-labelledby': 'tenants-h'}, h('h2', {id: 'tenants-h'}, 'Tenants (HTTP, this node)'),
      tenantCharts(o),
      table('Since this node started', [
        {label: 'Tenant', value: (t) => t.tenant || '(no tenant)'},
        {label: 'Requests', num: true, value: (t) => fmtInt(t.requests)},
        {label: '4xx', num: true, value: (t) => fmtInt(t.clientErrors)},
        {label: '5xx', num: true, value: (t) => fmtInt(t.serverErrors)},
        {label: 'Mean latency', num: true, value: (t) => (t.latencyCount ? fmtNum((t.latencySumSeconds / t.latencyCount) * 1000, 1) : '0') + ' ms'},
      ], o.tenants, 'No requests yet.')));
  document.getElementById('updated').textContent = `Node ${o.node} · updated ${new Date(o.time).toLocaleTimeString()}`;
}

function tokenForm(problem) {
  const input = h('input', {type: 'password', id: 'admin-token', autocomplete: 'off'});
  const form = h('form', {class: 'card signin', id: 'token-form'}, h('h2', {}, 'Admin token'),
    h('p', {class: 'muted'}, 'This node\'s admin listener needs its --admin-token. It stays in this tab\'s session storage.'),
    h('label', {for: 'admin-token'}, 'Token'), input,
    h('div', {class: 'row composer'}, h('button', {type: 'submit'}, 'Continue')), problem ? errorBanner(problem) : null);
  form.addEventListener('submit', (ev) => { ev.preventDefault(); sessionStorage.setItem(TOKEN, input.value); start(); });
  clear(main, form);
  input.focus();
}

async function refresh() {
  try {
    render(await fetchOverview());
    document.getElementById('poll-error').replaceChildren();
  } catch (err) {
    if (err.status === 401) { stopTimer(); return tokenForm(sessionStorage.getItem(TOKEN) ? 'That token was refused.' : null); }
    document.getElementById('poll-error').replaceChildren(errorBanner('Refresh failed: ' + err.message));
  }
}

function stopTimer() { if (timer) clearInterval(timer); timer = null; }

function start() {
  const auto = h('input', {type: 'checkbox', id: 'auto', checked: true});
  const every = h('select', {id: 'every'}, [['2', '2 s'], ['5', '5 s'], ['15', '15 s'], ['60', '1 min']].map(([v, l]) => h('option', {value: v, selected: v === '5'}, l)));
  const now = h('button', {type: 'button', class: 'secondary'}, 'Refresh now');
  const schedule = () => { stopTimer(); if (auto.checked) timer = setInterval(refresh, Number(every.value) * 1000); };
  auto.addEventListener('change', schedule);
  every.addEventListener('change', schedule);
  now.addEventListener('click', refresh);
  clear(who, h('span', {id: 'updated'}), h('label', {class: 'inline', for: 'auto'}, auto, 'Auto-refresh'),
    h('label', {class: 'visually-hidden', for: 'every'}, 'Refresh interval'), every, now);
  clear(main, h('div', {id: 'poll-error'}), h('div', {id: 'content', 'aria-live': 'off'}, h('p', {class: 'muted'}, 'Loading…')));
  refresh();
  schedule();
}

start();
