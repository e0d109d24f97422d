// Small DOM helpers. Text always goes in as text nodes, never as HTML: whatever a model, a document
// or an error message says cannot become markup.

// h builds an element: h('a', {href: '#x', class: 'link', onclick: fn}, 'text', child, ...).
export function h(tag, attrs = {}, ...children) {
  const svg = tag.startsWith('svg:');
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// clear empties el and appends children.
export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function fmtInt(n) {
  return Number(n || 0).toLocaleString('en-US');
}

export function fmtNum(n, digits = 2) {
  return Number(n || 0).toLocaleString('en-US', {maximumFractionDigits: digits});
}

export function fmtCost(n) {
  return '$' + Number(n || 0).toLocaleString('en-US', {minimumFractionDigits: 2, maximumFractionDigits: 6});
}

export function fmtBytes(n) {
  n = Number(n || 0);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

export function fmtTime(t) {
  if (!t) return '';
  const d = typeof t === 'number' ? new Date(t) : new Date(String(t));
  return isNaN(d) ? String(t) : d.toLocaleString();
}

// table builds an accessible table from column specs {label, value(row), num?}.
export function table(caption, columns, rows, empty = 'Nothing yet.') {
  if (!rows.length) return h('p', {class: 'muted'}, empty);
  return h('div', {class: 'table-wrap'},
    h('table', {},
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', {scope: 'col', class: c.num ? 'num' : ''}, c.label)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, columns.map((c, i) => {
        const v = c.value(r);
        return i === 0 ? h('th', {scope: 'row'}, v) : h('td', {class: c.num ? 'num' : ''}, v);
      }))))));
}
