// The profiler: saved sessions with their summaries; a live session (the WebSocket's
// `profile` topic starts it or joins it) drawn every second over a fixed window; and a
// saved session's charts with its CSV.

import { h, fill, table, bytes, rate, percent, time, stateBadge, pager, count } from '../dom.js';
import { get, query, can, request } from '../api.js';
import { lineChart } from '../chart.js';
import { live } from '../live.js';

const PAGE = 50;
/** The live chart keeps this many samples: memory stays flat however long it runs. */
const WINDOW = 120;
/** How long a session started here may run, in seconds. */
const LIVE_DURATION = 3600;

export function render(main, params, page, path) {
  if (path.startsWith('/profiler/live/')) return liveSession(main, Number(params[0]), page);
  if (path.startsWith('/profiles/')) return saved(main, Number(params[0]), page);
  return sessions(main, page);
}

function summaryCells() {
  return [
    ['CPU avg', (p) => percent(p.summary?.cpu_percent_avg), 'num'],
    ['CPU max', (p) => percent(p.summary?.cpu_percent_max), 'num'],
    ['Memory max', (p) => bytes(p.summary?.memory_working_set_max_bytes), 'num'],
  ];
}

async function sessions(main, page) {
  const list = h('div', { id: 'profiles' });
  const starter = h('div', { id: 'start-profile' });
  fill(main, h('h1', {}, 'Profiler'), starter, h('h2', {}, 'Sessions'), list);
  let offset = 0;
  async function load() {
    const answer = await get(`/profiles${query({ offset, limit: PAGE })}`);
    if (page.left) return;
    fill(list, table([
      ['Session', (p) => h('a', { href: `#/profiles/${p.id}` }, `#${p.id}`)],
      ['Container', (p) => h('a', { href: `#/containers/${p.container_id}` }, p.container_name)],
      ['State', (p) => stateBadge(p.state)],
      ['Started', (p) => time(p.started_ns)],
      ['Ended', (p) => (p.ended_ns ? `${time(p.ended_ns)} (${p.reason})` : '')],
      ['Samples', (p) => count(p.samples), 'num'],
      ...summaryCells(),
    ], answer.items, { class: 'profiles' }), pager(offset, PAGE, answer.total, (next) => { offset = next; load(); }));
  }
  if (can('operator')) {
    const search = h('input', { type: 'search', id: 'profile-search', placeholder: 'Running container name or image…' });
    const found = h('div');
    const find = async () => {
      const answer = await get(`/containers${query({ state: 'running', search: search.value.trim(), limit: 10 })}`);
      if (page.left) return;
      fill(found, table([
        ['Container', (c) => c.name], ['Image', (c) => c.image],
        ['', (c) => h('a', { href: `#/profiler/live/${c.id}`, class: 'start-profile' }, 'Profile live')],
      ], answer.items));
    };
    let typing = null;
    search.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(find, 250); });
    page.onLeave(() => clearTimeout(typing));
    fill(starter, h('h2', {}, 'Start a profile'), search, found);
    await find();
  }
  await load();
}

async function liveSession(main, containerId, page) {
  const container = await get(`/containers/${containerId}`);
  if (page.left) return;
  const status = h('p', { id: 'profile-status', class: 'muted' },
    'A profile samples the container every second for up to an hour, while this page watches it.');
  const start = h('button', { class: 'primary', id: 'start-profile' }, 'Start profile');
  const stop = h('button', { class: 'danger', id: 'stop-profile', disabled: true }, 'Stop');
  const cpu = lineChart('CPU (1 s)', percent);
  const memory = lineChart('Memory (1 s)', bytes);
  const network = lineChart('Network (1 s)', rate);
  const samples = [];
  let profile = null;

  fill(main, h('h1', {}, 'Live profile: ', h('a', { href: `#/containers/${containerId}` }, container.name)),
    h('div', { class: 'toolbar' }, start, stop, status),
    h('div', { class: 'grid', id: 'live-charts' }, cpu.element, memory.element, network.element));

  function draw() {
    // The window fills from its left edge, then slides: WINDOW samples at most.
    const to = samples.length ? samples.at(-1).time_ns / 1e6 : Date.now();
    const from = samples.length > 1 ? Math.max(samples[0].time_ns / 1e6, to - WINDOW * 1000) : to - WINDOW * 1000;
    const points = (key) => samples.map((s) => [s.time_ns / 1e6, s[key]]);
    cpu.draw([{ name: 'CPU', points: points('cpu_percent') }], from, to);
    memory.draw([{ name: 'usage', points: points('memory_usage_bytes') }, { name: 'working set', points: points('memory_working_set_bytes') }], from, to);
    network.draw([{ name: 'received', points: points('net_rx_bytes_per_s') }, { name: 'sent', points: points('net_tx_bytes_per_s') }], from, to);
  }
  draw();

  stop.addEventListener('click', () => {
    if (profile === null) return;
    stop.disabled = true;
    live.stopProfile(profile);
  });

  // Following a link never starts a session: the button does (subscribing starts one, or
  // joins the one running).
  let unsubscribe = () => {};
  page.onLeave(() => unsubscribe());
  start.addEventListener('click', () => {
    start.disabled = true;
    fill(status, 'Starting…');
    unsubscribe = live.subscribe({ topic: 'profile', container: containerId, interval: 1, duration: LIVE_DURATION }, received);
  });

  function received(message) {
    if (message.type === 'error') {
      start.disabled = false;
      fill(status, h('span', { class: 'error' }, message.message));
    } else if (message.type === 'profile_state' && message.state === 'started') {
      profile = message.profile;
      stop.disabled = false;
      fill(status, `Session #${profile}${message.joined ? ' (joined a running one)' : ''}: a sample every second.`);
    } else if (message.type === 'profile_state' && message.state === 'ended') {
      // Ended at the server: a reconnect must not subscribe (and so start one) again.
      live.forget('profile', containerId);
      unsubscribe = () => {};
      stop.disabled = true;
      start.disabled = false;
      fill(status, `Session ended (${message.reason}). `,
        h('a', { href: `#/profiles/${message.profile}`, id: 'saved-session' }, `See saved session #${message.profile}`));
    } else if (message.type === 'profile') {
      profile = message.profile;
      samples.push(...message.items);
      samples.splice(0, Math.max(0, samples.length - WINDOW));
      draw();
    }
  }
}

async function saved(main, id, page) {
  const profile = await get(`/profiles/${id}`);
  const rows = [];
  for (let offset = 0; offset < Math.min(profile.samples, 100000); offset += 1000) {
    const answer = await get(`/profiles/${id}/samples?offset=${offset}&limit=1000`);
    rows.push(...answer.items);
    if (answer.items.length < 1000 || page.left) break;
  }
  if (page.left) return;
  const download = h('button', { id: 'csv', onclick: async () => {
    const blob = await request('GET', `/profiles/${id}/samples`, undefined, 'text/csv');
    const link = h('a', { href: URL.createObjectURL(blob), download: `profile-${id}.csv` });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } }, 'Download CSV');
  const cpu = lineChart('CPU', percent);
  const memory = lineChart('Memory', bytes);
  const network = lineChart('Network', rate);
  const block = lineChart('Block IO', rate);
  const s = profile.summary;
  fill(main, h('h1', {}, `Profile #${id}: `, h('a', { href: `#/containers/${profile.container_id}` }, profile.container_name)),
    h('div', { class: 'card', id: 'profile-summary' }, h('dl', { class: 'facts' },
      h('dt', {}, 'State'), h('dd', {}, stateBadge(profile.state), profile.reason ? ` (${profile.reason})` : ''),
      h('dt', {}, 'Started'), h('dd', {}, time(profile.started_ns)),
      h('dt', {}, 'Ended'), h('dd', {}, time(profile.ended_ns)),
      h('dt', {}, 'Samples'), h('dd', {}, `${count(profile.samples)} every ${profile.interval_ms} ms`),
      s ? [h('dt', {}, 'CPU'), h('dd', {}, `avg ${percent(s.cpu_percent_avg)}, max ${percent(s.cpu_percent_max)}`),
        h('dt', {}, 'Memory max'), h('dd', {}, `${bytes(s.memory_usage_max_bytes)} (working set ${bytes(s.memory_working_set_max_bytes)})`),
        h('dt', {}, 'Network'), h('dd', {}, `received ${bytes(s.net_rx_bytes)}, sent ${bytes(s.net_tx_bytes)}`),
        h('dt', {}, 'Block IO'), h('dd', {}, `read ${bytes(s.block_read_bytes)}, written ${bytes(s.block_write_bytes)}`)] : [])),
    h('div', { class: 'toolbar' }, download),
    h('div', { class: 'grid' }, cpu.element, memory.element, network.element, block.element));
  const from = rows.length ? rows[0].time_ns / 1e6 : profile.started_ns / 1e6;
  const to = rows.length ? rows.at(-1).time_ns / 1e6 : from + 1000;
  const points = (key) => rows.map((row) => [row.time_ns / 1e6, row[key]]);
  cpu.draw([{ name: 'CPU', points: points('cpu_percent') }], from, to);
  memory.draw([{ name: 'usage', points: points('memory_usage_bytes') }, { name: 'working set', points: points('memory_working_set_bytes') }], from, to);
  network.draw([{ name: 'received', points: points('net_rx_bytes_per_s') }, { name: 'sent', points: points('net_tx_bytes_per_s') }], from, to);
  block.draw([{ name: 'read', points: points('block_read_bytes_per_s') }, { name: 'written', points: points('block_write_bytes_per_s') }], from, to);
}
