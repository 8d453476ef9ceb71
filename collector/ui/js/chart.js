// Line charts drawn as SVG: a time axis, a value axis from zero to a rounded maximum,
// and one polyline per series. Drawn here rather than with a library: no registry we
// reach carries a JavaScript charting library, and this is all the UI needs.
//
// `lineChart(title, format)` returns `{element, draw(series, from, to)}`; each series is
// `{name, points: [[timeMs, value|null], …]}`. A null value breaks the line. The SVG
// carries `data-points`, the number of points drawn, for whoever needs to count them.

import { h, fill } from './dom.js';

const WIDTH = 600;
const HEIGHT = 170;
const LEFT = 58;
const RIGHT = 8;
const TOP = 8;
const BOTTOM = 20;
const COLORS = ['#1f6feb', '#d4a72c', '#1a7f37', '#cf222e'];

/** 0.73 → 1, 7.3 → 10, 230 → 250: a maximum with round gridlines. */
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function clock(ms, span) {
  const date = new Date(ms);
  return span > 2 * 86400e3
    ? date.toLocaleDateString([], { month: 'short', day: 'numeric' })
    : date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: span < 600e3 ? '2-digit' : undefined });
}

export function lineChart(title, format) {
  const svg = h('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, 'data-points': 0, role: 'img', 'aria-label': title });
  const legend = h('div', { class: 'legend' });
  const element = h('div', { class: 'chart card' }, h('h3', {}, title), svg, legend);

  function draw(series, from, to) {
    const span = Math.max(to - from, 1);
    let max = 0;
    let drawn = 0;
    for (const { points } of series) {
      for (const [, value] of points) if (value !== null && value > max) max = value;
    }
    max = niceMax(max);
    const x = (ms) => LEFT + ((ms - from) / span) * (WIDTH - LEFT - RIGHT);
    const y = (value) => TOP + (1 - value / max) * (HEIGHT - TOP - BOTTOM);
    const grid = [0, 0.5, 1].map((share) => h('g', {},
      h('line', { class: 'axis', x1: LEFT, x2: WIDTH - RIGHT, y1: y(max * share), y2: y(max * share) }),
      h('text', { class: 'label', x: LEFT - 4, y: y(max * share) + 3, 'text-anchor': 'end' }, format(max * share))));
    const times = h('g', {},
      h('text', { class: 'label', x: LEFT, y: HEIGHT - 4 }, clock(from, span)),
      h('text', { class: 'label', x: WIDTH - RIGHT, y: HEIGHT - 4, 'text-anchor': 'end' }, clock(to, span)));
    const lines = series.map(({ points }, index) => {
      // A null starts a new segment, so a gap in the data is a gap in the line.
      const segments = [[]];
      for (const [ms, value] of points) {
        if (value === null || value === undefined || ms < from || ms > to) {
          if (segments.at(-1).length) segments.push([]);
          continue;
        }
        segments.at(-1).push(`${x(ms).toFixed(1)},${y(value).toFixed(1)}`);
        drawn += 1;
      }
      return segments.filter((segment) => segment.length).map((segment) => (segment.length === 1
        ? h('circle', { cx: segment[0].split(',')[0], cy: segment[0].split(',')[1], r: 2, fill: COLORS[index % COLORS.length] })
        : h('polyline', { points: segment.join(' '), fill: 'none', stroke: COLORS[index % COLORS.length], 'stroke-width': 1.5})));
    });
    fill(svg, grid, times, lines);
    svg.setAttribute('data-points', drawn);
    fill(legend, series.map(({ name, points }, index) => {
      const last = [...points].reverse().find(([, value]) => value !== null && value !== undefined);
      const swatch = h('i');
      swatch.style.background = COLORS[index % COLORS.length];
      return h('span', {}, swatch, name, last ? ` ${format(last[1])}` : '');
    }));
  }

  return { element, draw };
}
