// A tiny SVG chart module: grouped or stacked bars over categories, and lines over time. The SVG has
// a role, a title and a text description, and every bar and point carries its value in a data-
// attribute and a <title> (hover), so the numbers are readable without the picture.
import {h} from './dom.js';

const W = 640;
const PAD = {top: 12, right: 12, bottom: 44, left: 56};

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function axis(svg, max, height, format) {
  const inner = height - PAD.top - PAD.bottom;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const y = PAD.top + inner - (inner * i) / 4;
    svg.append(h('svg:line', {x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: 'grid'}));
    svg.append(h('svg:text', {x: PAD.left - 6, y: y + 4, class: 'tick', 'text-anchor': 'end'}, format(v)));
  }
}

function legend(series) {
  if (series.length < 2) return null;
  return h('ul', {class: 'legend'}, series.map((s, i) => h('li', {}, h('span', {class: 'swatch s' + (i % 8), 'aria-hidden': 'true'}), s.name)));
}

// barChart: labels on the x axis, one or more series of values per label.
export function barChart({title, labels, series, stacked = false, format = String, height = 240, id}) {
  const svg = h('svg:svg', {viewBox: `0 0 ${W} ${height}`, role: 'img', 'aria-label': title, class: 'chart', id});
  svg.append(h('svg:title', {}, title));
  const totals = labels.map((_, i) => series.reduce((a, s) => a + (Number(s.values[i]) || 0), 0));
  const max = niceMax(stacked ? Math.max(0, ...totals) : Math.max(0, ...series.flatMap((s) => s.values.map(Number))));
  axis(svg, max, height, format);
  const inner = height - PAD.top - PAD.bottom;
  const slot = (W - PAD.left - PAD.right) / Math.max(1, labels.length);
  const groups = stacked ? 1 : series.length;
  const bw = Math.max(2, Math.min(48, (slot * 0.8) / groups));
  const every = Math.ceil(labels.length / 12);
  labels.forEach((label, i) => {
    let base = 0;
    series.forEach((s, j) => {
      const v = Number(s.values[i]) || 0;
      const bh = (inner * v) / max;
      const x = PAD.left + slot * i + (slot - bw * groups) / 2 + (stacked ? 0 : j * bw);
      const y = PAD.top + inner - bh - (stacked ? (inner * base) / max : 0);
      if (stacked) base += v;
      svg.append(h('svg:rect', {x, y, width: bw, height: Math.max(0, bh), class: 'bar s' + (j % 8),
        'data-label': label, 'data-series': s.name, 'data-value': v},
      h('svg:title', {}, `${label} · ${s.name}: ${format(v)}`)));
    });
    if (i % every === 0) {
      svg.append(h('svg:text', {x: PAD.left + slot * i + slot / 2, y: height - PAD.bottom + 16, class: 'tick', 'text-anchor': 'middle'},
        label.length > 14 ? label.slice(0, 13) + '…' : label));
    }
  });
  return h('figure', {class: 'chart-fig'}, h('figcaption', {}, title), svg, legend(series));
}

// lineChart: x are numbers (epoch ms), one line per series; null values break a line.
export function lineChart({title, x, series, format = String, height = 200, id}) {
  const svg = h('svg:svg', {viewBox: `0 0 ${W} ${height}`, role: 'img', 'aria-label': title, class: 'chart', id});
  svg.append(h('svg:title', {}, title));
  const vals = series.flatMap((s) => s.values.filter((v) => v !== null && isFinite(v)));
  const max = niceMax(Math.max(0, ...vals));
  axis(svg, max, height, format);
  const inner = height - PAD.top - PAD.bottom;
  const x0 = x[0] ?? 0;
  const span = Math.max(1, (x[x.length - 1] ?? 1) - x0);
  const px = (t) => PAD.left + ((W - PAD.left - PAD.right) * (t - x0)) / span;
  const py = (v) => PAD.top + inner - (inner * v) / max;
  series.forEach((s, j) => {
    let d = '';
    s.values.forEach((v, i) => {
      if (v === null || !isFinite(v)) { d += ' '; return; }
      d += (d === '' || d.endsWith(' ') ? 'M' : 'L') + px(x[i]).toFixed(1) + ',' + py(v).toFixed(1) + ' ';
    });
    svg.append(h('svg:path', {d: d.trim().replace(/\s+M/g, ' M') || 'M0,0', class: 'line s' + (j % 8), 'data-series': s.name,
      'data-last': s.values[s.values.length - 1] ?? ''}));
  });
  if (x.length) {
    const t = (ms) => new Date(ms).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', second: '2-digit'});
    svg.append(h('svg:text', {x: PAD.left, y: height - PAD.bottom + 16, class: 'tick'}, t(x[0])));
    svg.append(h('svg:text', {x: W - PAD.right, y: height - PAD.bottom + 16, class: 'tick', 'text-anchor': 'end'}, t(x[x.length - 1])));
  }
  return h('figure', {class: 'chart-fig'}, h('figcaption', {}, title), svg, legend(series));
}
