// Usage: GET /usage by day and by model (tokens, requests, cost as charts and tables), the token
// budget used today and this month, the last rate-limit state the API reported, this session's
// recent errors, and the tenant metrics endpoints (SLIs, search cache, tools, alerts).
import {h, clear, fmtInt, fmtNum, fmtCost, fmtTime, table} from './common/dom.js';
import {barChart} from './common/chart.js';
import {get, rateLimit, recentErrors} from './api.js';
import {errorBanner} from './ui.js';

const DAY = 86400000;

// fmtUSD keeps axis ticks short: tiny amounts (local models cost fractions of a cent) in exponent form.
function fmtUSD(v) { return v === 0 ? '0' : Math.abs(v) < 0.01 ? v.toExponential(1) : fmtNum(v, 4); }

function isoDay(ms) { return new Date(ms).toISOString().slice(0, 10); }

// days fills the days of the window that have no row with zeros, so the chart's x axis is time.
function daily(rows, from, to) {
  const by = new Map(rows.map((r) => [r.key, r]));
  const out = [];
  for (let t = Date.parse(from.slice(0, 10)); t < Date.parse(to); t += DAY) { // to is exclusive
    const k = isoDay(t);
    out.push(by.get(k) || {key: k, requests: 0, tokensIn: 0, tokensOut: 0, cost: 0, syntheses: 0, characters: 0});
  }
  return out;
}

function stat(label, value, id) {
  return h('div', {}, h('dt', {}, label), h('dd', id ? {id} : {}, value));
}

export function render(main) {
  const period = h('select', {id: 'period'}, [['7', 'Last 7 days'], ['30', 'Last 30 days'], ['90', 'Last 90 days']]
    .map(([v, l]) => h('option', {value: v, selected: v === '30'}, l)));
  const mperiod = h('select', {id: 'metrics-period'}, ['1h', '24h', '7d'].map((v) => h('option', {value: v, selected: v === '24h'}, v)));
  const refresh = h('button', {type: 'button', class: 'secondary', id: 'usage-refresh'}, 'Refresh');
  const totals = h('div', {id: 'usage-totals'});
  const byDay = h('div', {id: 'usage-by-day'});
  const byModel = h('div', {id: 'usage-by-model'});
  const budget = h('div', {id: 'budget'});
  const limits = h('div', {id: 'ratelimit'});
  const errs = h('div', {id: 'recent-errors'});
  const metrics = h('div', {id: 'tenant-metrics'});
  const problems = h('div', {});

  async function load() {
    clear(problems);
    const days = Number(period.value);
    const to = new Date();
    const from = new Date(Date.UTC(to.getUTCFullYear(), to.getUTCMonth(), to.getUTCDate()) - (days - 1) * DAY);
    const q = `from=${isoDay(from.getTime())}&to=${isoDay(to.getTime())}`;
    const monthStart = isoDay(Date.UTC(to.getUTCFullYear(), to.getUTCMonth(), 1));
    const [dayRes, modelRes, monthRes, overview, alerts] = await Promise.allSettled([
      get(`/usage?groupBy=day&${q}`), get(`/usage?groupBy=model&${q}`),
      get(`/usage?groupBy=day&from=${monthStart}&to=${isoDay(to.getTime())}`),
      get(`/metrics/overview?period=${mperiod.value}`), get('/metrics/alerts')]);
    for (const r of [dayRes, modelRes, monthRes, overview, alerts]) if (r.status === 'rejected') problems.append(errorBanner(r.reason));

    if (dayRes.status === 'fulfilled') {
      const d = dayRes.value;
      const rows = daily(d.rows, d.from, d.to);
      const labels = rows.map((r) => r.key.slice(5));
      const t = d.totals;
      clear(totals, h('dl', {class: 'stats'},
        stat('Requests', fmtInt(t.requests), 'total-requests'), stat('Tokens in', fmtInt(t.tokensIn), 'total-tokens-in'),
        stat('Tokens out', fmtInt(t.tokensOut), 'total-tokens-out'), stat('Cost', fmtCost(t.cost), 'total-cost'),
        stat('Served from cache', fmtInt(t.cached)), stat('Estimated usage', fmtInt(t.estimated))));
      clear(byDay,
        barChart({title: 'Tokens per day', id: 'chart-tokens-day', labels, stacked: true, format: fmtInt,
          series: [{name: 'in', values: rows.map((r) => r.tokensIn)}, {name: 'out', values: rows.map((r) => r.tokensOut)}]}),
        h('div', {class: 'grid2'},
          barChart({title: 'Requests per day', id: 'chart-requests-day', labels, format: fmtInt, height: 200,
            series: [{name: 'requests', values: rows.map((r) => r.requests)}]}),
          barChart({title: 'Cost per day (USD)', id: 'chart-cost-day', labels, format: fmtUSD, height: 200,
            series: [{name: 'cost', values: rows.map((r) => r.cost)}]})),
        h('details', {}, h('summary', {}, 'Table'), table('Usage per day (UTC)', [
          {label: 'Day', value: (r) => r.key}, {label: 'Requests', num: true, value: (r) => fmtInt(r.requests)},
          {label: 'Tokens in', num: true, value: (r) => fmtInt(r.tokensIn)}, {label: 'Tokens out', num: true, value: (r) => fmtInt(r.tokensOut)},
          {label: 'Cost', num: true, value: (r) => fmtCost(r.cost)}, {label: 'Speech chars', num: true, value: (r) => fmtInt(r.characters)},
        ], d.rows)));
    }
    if (modelRes.status === 'fulfilled') {
      const rows = modelRes.value.rows;
      clear(byModel, rows.length ? h('div', {class: 'grid2'},
        barChart({title: 'Tokens per model', id: 'chart-tokens-model', labels: rows.map((r) => r.key), stacked: true, format: fmtInt, height: 220,
          series: [{name: 'in', values: rows.map((r) => r.tokensIn)}, {name: 'out', values: rows.map((r) => r.tokensOut)}]}),
        barChart({title: 'Cost per model (USD)', id: 'chart-cost-model', labels: rows.map((r) => r.key), format: fmtUSD, height: 220,
          series: [{name: 'cost', values: rows.map((r) => r.cost)}]})) : h('p', {class: 'muted'}, 'No model calls in this period.'),
      table('Usage per model', [
        {label: 'Model', value: (r) => r.key}, {label: 'Requests', num: true, value: (r) => fmtInt(r.requests)},
        {label: 'Tokens in', num: true, value: (r) => fmtInt(r.tokensIn)}, {label: 'Tokens out', num: true, value: (r) => fmtInt(r.tokensOut)},
        {label: 'Avg latency', num: true, value: (r) => fmtNum(r.avgLatencyMs, 0) + ' ms'}, {label: 'Cost', num: true, value: (r) => fmtCost(r.cost)},
      ], rows, ''));
    }
    if (dayRes.status === 'fulfilled' && monthRes.status === 'fulfilled') {
      const today = isoDay(Date.now());
      const tr = dayRes.value.rows.find((r) => r.key === today) || {tokensIn: 0, tokensOut: 0};
      const used = tr.tokensIn + tr.tokensOut;
      const month = monthRes.value.totals.tokensIn + monthRes.value.totals.tokensOut;
      // GET /usage names the tenant's tokenBudget limits (0: none); the used side is the ledger's.
      const lim = monthRes.value.budget || {daily: 0, monthly: 0};
      const of = (n, limit) => fmtInt(n) + (limit > 0 ? ' of ' + fmtInt(limit) : ' (no limit)');
      clear(budget, h('dl', {class: 'stats'}, stat('Tokens used today (UTC)', of(used, lim.daily), 'budget-today'),
        stat('Tokens used this month', of(month, lim.monthly), 'budget-month')),
      h('p', {class: 'muted'}, 'A request whose estimate would pass a limit gets 429 budget_exceeded, listed under recent errors.'));
    }
    renderLocal();
    if (overview.status === 'fulfilled') renderMetrics(overview.value, alerts.status === 'fulfilled' ? alerts.value.rules || [] : []);
  }

  function renderLocal() {
    const rl = rateLimit();
    clear(limits, rl ? h('dl', {class: 'stats'},
      stat('Limit per minute', fmtInt(rl.limit)), stat('Remaining', fmtInt(rl.remaining), 'rl-remaining'),
      stat('Window resets', fmtTime(rl.resetAt)), stat('Seen on', rl.route))
      : h('p', {class: 'muted'}, 'No rate-limited call yet in this session (chat, search, ingest and speech report it).'));
    const list = recentErrors();
    clear(errs, table('Errors this console received (this tab)', [
      {label: 'When', value: (r) => fmtTime(r.time)}, {label: 'Request', value: (r) => r.route},
      {label: 'Status', num: true, value: (r) => r.status}, {label: 'Code', value: (r) => r.code},
      {label: 'Message', value: (r) => r.message}, {label: 'Trace', value: (r) => r.traceId || ''},
    ], list, 'No errors in this session.'));
  }

  function renderMetrics(o, alerts) {
    const s = o.slis || {}, c = o.searchCache || {}, t = o.tools || {}, cost = o.cost || {};
    const lat = s.latencyMs || {};
    clear(metrics,
      h('h3', {}, 'Service levels (model calls)'),
      h('dl', {class: 'stats', id: 'slis'},
        stat('Calls', fmtInt(s.modelCalls?.total)), stat('Availability', fmtNum((s.availability ?? 1) * 100, 2) + ' %'),
        stat('Error rate', fmtNum((s.errorRate || 0) * 100, 2) + ' %'), stat('Latency p50', fmtNum(lat.p50, 0) + ' ms'),
        stat('Latency p95', fmtNum(lat.p95, 0) + ' ms'), stat('Latency p99', fmtNum(lat.p99, 0) + ' ms')),
      h('h3', {}, 'Search cache'),
      h('dl', {class: 'stats'}, stat('Searches', fmtInt(c.totalSearches ?? c.totalChecks)), stat('Hit rate', fmtNum((c.hitRate || 0) * 100, 1) + ' %'),
        stat('Avg latency', fmtNum(c.avgLatencyMs, 1) + ' ms'), stat('Errors', fmtInt(c.errors))),
      h('h3', {}, 'Tools'),
      h('dl', {class: 'stats'}, stat('Executions', fmtInt(t.totalExecutions)), stat('Errors', fmtInt(t.errorCount)),
        stat('Avg duration', fmtNum(t.avgDurationMs, 1) + ' ms'), stat('Cost in period', fmtCost(cost.totalCost))),
      h('h3', {}, 'Alerts'),
      table('Alert rules', [
        {label: 'Name', value: (r) => r.name || r.id}, {label: 'Rule', value: (r) => `${r.metric} ${r.operator} ${r.threshold}`},
        {label: 'Value', num: true, value: (r) => fmtNum(r.value, 4)},
        {label: 'State', value: (r) => h('span', {class: 'pill ' + (r.firing ? 'firing' : 'firing-no')}, r.firing ? 'firing' : 'ok')},
      ], alerts, 'No alert rules (POST /metrics/alerts adds one).'),
      h('details', {}, h('summary', {}, 'Raw /metrics/overview'), h('pre', {}, JSON.stringify(o, null, 2))));
  }

  refresh.addEventListener('click', load);
  period.addEventListener('change', load);
  mperiod.addEventListener('change', load);
  main.append(
    h('section', {class: 'panel', 'aria-labelledby': 'usage-h'}, h('h2', {id: 'usage-h'}, 'Usage'),
      h('div', {class: 'row'}, h('div', {}, h('label', {for: 'period'}, 'Period'), period),
        h('div', {}, h('label', {for: 'metrics-period'}, 'Metrics period'), mperiod), refresh),
      problems, totals, byDay, h('h3', {}, 'Per model'), byModel),
    h('div', {class: 'grid2'},
      h('section', {class: 'panel', 'aria-labelledby': 'budget-h'}, h('h2', {id: 'budget-h'}, 'Token budget'), budget),
      h('section', {class: 'panel', 'aria-labelledby': 'rl-h'}, h('h2', {id: 'rl-h'}, 'Rate limit'), limits)),
    h('section', {class: 'panel', 'aria-labelledby': 'err-h'}, h('h2', {id: 'err-h'}, 'Recent errors'), errs),
    h('section', {class: 'panel', 'aria-labelledby': 'm-h'}, h('h2', {id: 'm-h'}, 'Tenant metrics'), metrics));
  load();
}
