// The fleet: hosts with their connection state and container counts, then containers
// across hosts with filters, search and pages. CPU and memory come from each host's
// latest stats and then from the WebSocket's `stats` topic for the hosts on the page.

import { h, fill, table, count, ago, stateBadge, pager } from '../dom.js';
import { Figures } from '../figures.js';
import { get, query } from '../api.js';
import { live } from '../live.js';

const PAGE = 50;
const HOSTS_SHOWN = 10;

export async function render(main, _params, page) {
  const hostPage = await get('/hosts?limit=1000');
  const hosts = hostPage.items;
  if (page.left) return;
  const hostNames = new Map(hosts.map((host) => [host.id, host.name]));
  const hostCounts = h('div');
  const search = h('input', { id: 'search', type: 'search', placeholder: 'Name or image contains…' });
  const hostFilter = h('select', { id: 'host-filter' }, h('option', { value: '' }, 'All hosts'),
    hosts.map((host) => h('option', { value: host.id }, host.name)));
  const stateFilter = h('select', { id: 'state-filter' }, h('option', { value: '' }, 'Any state'),
    ['running', 'exited', 'paused', 'restarting', 'created', 'dead'].map((state) => h('option', { value: state }, state)));
  const list = h('div', { id: 'containers' });
  fill(main,
    h('h1', {}, 'Fleet'),
    h('h2', {}, `Hosts (${count(hostPage.total)})`), hostCounts,
    h('h2', {}, 'Containers'),
    h('div', { class: 'toolbar' }, search, hostFilter, stateFilter),
    list);

  // A long fleet shows its first hosts, and the rest on demand.
  let allHosts = hosts.length <= HOSTS_SHOWN;
  const drawHosts = () => fill(hostCounts, table([
    ['Host', (host) => h('a', { href: `#/hosts/${host.id}` }, host.name)],
    ['Agent', (host) => (host.connected ? h('span', { class: 'ok' }, 'connected') : h('span', { class: 'bad' }, `disconnected, seen ${ago(host.last_seen_ns)}`))],
    ['Running', (host) => count(host.containers.running), 'num'],
    ['Containers', (host) => count(host.containers.total), 'num'],
    ['Docker', (host) => host.docker_version],
    ['Agent version', (host) => host.agent_version],
  ], allHosts ? hosts : hosts.slice(0, HOSTS_SHOWN), { class: 'hosts' }),
  allHosts ? [] : h('button', { id: 'all-hosts', onclick: () => { allHosts = true; drawHosts(); } }, `Show all ${count(hosts.length)} hosts`));
  drawHosts();

  // Latest figures by Docker id, per host; filled from the API, then kept live.
  const figures = new Figures();
  const watched = new Map();
  let offset = 0;
  let rows = [];

  function drawRows(total) {
    fill(list, table([
      ['Name', (row) => h('a', { href: `#/containers/${row.id}`, class: 'container-name' }, row.name)],
      ['Host', (row) => h('a', { href: `#/hosts/${row.host_id}` }, hostNames.get(row.host_id) ?? row.host_id)],
      ['Image', (row) => row.image],
      ['State', (row) => stateBadge(row.state)],
      ['Health', (row) => row.health ?? ''],
      ['CPU', (row) => figures.cpuCell(row), 'num'],
      ['Memory', (row) => figures.memoryCell(row), 'num'],
      ['Compose', (row) => (row.compose_project ? `${row.compose_project}/${row.compose_service ?? ''}` : '')],
    ], rows, { class: 'containers' }), pager(offset, PAGE, total, (next) => { offset = next; load(); }));
  }

  async function watchHosts(hostIds) {
    for (const [id, unsubscribe] of watched) {
      if (!hostIds.has(id)) { unsubscribe(); watched.delete(id); }
    }
    await Promise.all([...hostIds].filter((id) => !watched.has(id)).map(async (id) => {
      watched.set(id, live.subscribe({ topic: 'stats', host: id }, (message) => {
        if (message.type !== 'stats') return;
        figures.addStats(message);
        figures.refresh(list, rows);
      }));
      figures.addLatest(await get(`/hosts/${id}/stats/latest`));
    }));
  }

  let loading = 0;
  async function load() {
    const ticket = ++loading;
    const answer = await get(`/containers${query({
      offset, limit: PAGE, search: search.value.trim(), host: hostFilter.value, state: stateFilter.value,
    })}`);
    if (page.left || ticket !== loading) return;
    if (offset > 0 && offset >= answer.total) {
      // The list shrank under this page: show its last page instead.
      offset = Math.max(0, Math.floor((answer.total - 1) / PAGE) * PAGE);
      load();
      return;
    }
    rows = answer.items;
    drawRows(answer.total);
    // For the benchmark (bench/ui.py): when the list first showed after the page loaded.
    if (!performance.getEntriesByName('fleet-rendered').length) performance.mark('fleet-rendered');
    await watchHosts(new Set(rows.map((row) => row.host_id)));
    if (!page.left && ticket === loading) figures.refresh(list, rows);
  }

  let typing = null;
  search.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(() => { offset = 0; load(); }, 250); });
  hostFilter.addEventListener('change', () => { offset = 0; load(); });
  stateFilter.addEventListener('change', () => { offset = 0; load(); });
  // Containers that come, go or change state: the page is read again, at most once a second.
  let reload = null;
  const stopInventory = live.subscribe({ topic: 'inventory' }, (message) => {
    if (message.type === 'inventory' && !reload) reload = setTimeout(() => { reload = null; load(); }, 1000);
  });
  page.onLeave(() => {
    clearTimeout(typing);
    clearTimeout(reload);
    stopInventory();
    watched.forEach((unsubscribe) => unsubscribe());
  });
  await load();
}
