// Building the page. Every element is made with createElement and every string becomes
// a text node: the UI never parses HTML, so a container name, label, image or event
// attribute (all chosen by whoever runs the container) cannot become markup or script.

/** `h('a', {href: '#/fleet', class: 'x', onclick: fn}, 'text', child, [more])` */
export function h(tag, attributes = {}, ...children) {
  const element = tag === 'svg' || SVG_TAGS.has(tag)
    ? document.createElementNS('http://www.w3.org/2000/svg', tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'class') element.setAttribute('class', value);
    else if (name === 'href' && !/^(#|\/(?![\/\\])|blob:)/.test(String(value))) {
      throw new Error('links stay inside the UI');
    } else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

const SVG_TAGS = new Set(['g', 'path', 'polyline', 'line', 'text', 'rect', 'circle']);

export function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** Replaces an element's content. */
export function fill(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

/** A table: `columns` are `[heading, row => cell, className?]`. */
export function table(columns, rows, attributes = {}) {
  return h('table', attributes,
    h('thead', {}, h('tr', {}, columns.map(([heading, , cls]) => h('th', { class: cls }, heading)))),
    h('tbody', {}, rows.length
      ? rows.map((row) => h('tr', { 'data-id': row.id }, columns.map(([, cell, cls]) => h('td', { class: cls }, cell(row)))))
      : h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, 'Nothing here.'))));
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 → "1.5 KiB"; null → "–". */
export function bytes(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  let unit = 0;
  let v = Math.abs(value);
  while (v >= 1024 && unit < UNITS.length - 1) { v /= 1024; unit += 1; }
  const digits = v >= 100 || (unit === 0 && Number.isInteger(v)) ? 0 : 1;
  return `${value < 0 ? '-' : ''}${v.toFixed(digits)} ${UNITS[unit]}`;
}

export const rate = (value) => (value === null || value === undefined ? '–' : `${bytes(value)}/s`);
export const percent = (value) => (value === null || value === undefined ? '–' : `${value.toFixed(1)} %`);
export const count = (value) => Number(value).toLocaleString('en-US');

/** Unix nanoseconds → local date and time. */
export function time(ns) {
  if (!ns) return '–';
  return new Date(ns / 1e6).toLocaleString();
}

/** Unix nanoseconds → "3 min ago". */
export function ago(ns) {
  if (!ns) return 'never';
  const s = Math.round((Date.now() - ns / 1e6) / 1000);
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function stateBadge(state) {
  return h('span', { class: `state-${state}` }, state);
}

/** A button that asks "Sure?" in place before it runs `action`. */
export function confirmButton(label, question, action, attributes = {}) {
  const wrapper = h('span', { class: 'confirm' });
  const button = h('button', { ...attributes, onclick: () => fill(wrapper, ask) }, label);
  const ask = h('span', { class: 'confirm' }, question,
    h('button', { class: 'danger', 'data-confirm': 'yes', onclick: async () => {
      fill(wrapper, h('span', { class: 'muted' }, `${label}…`));
      try { await action(); } catch (error) { fill(wrapper, button, h('span', { class: 'error' }, ` ${error.message}`)); return; }
      fill(wrapper, button);
    } }, 'Yes'),
    h('button', { onclick: () => fill(wrapper, button) }, 'No'));
  return fill(wrapper, button);
}

/** "1–50 of 1,000" with previous and next buttons. */
export function pager(offset, limit, total, go) {
  return h('div', { class: 'pager' },
    h('button', { disabled: offset === 0, onclick: () => go(Math.max(0, offset - limit)), 'data-page': 'previous' }, '‹ Previous'),
    h('span', { class: 'muted' }, total === 0 ? 'none' : `${count(offset + 1)}–${count(Math.min(offset + limit, total))} of ${count(total)}`),
    h('button', { disabled: offset + limit >= total, onclick: () => go(offset + limit), 'data-page': 'next' }, 'Next ›'));
}

export function errorText(error) {
  return h('p', { class: 'error' }, error.message || String(error));
}
