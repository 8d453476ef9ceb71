// One container: what Docker says of it, its CPU, memory, network and block IO over a
// chosen range (the API picks the resolution), its recent activity, and, for operators,
// its actions behind a confirmation.

import { h, fill, table, bytes, rate, percent, time, stateBadge, confirmButton } from '../dom.js';
import { get, post, can } from '../api.js';
import { lineChart } from '../chart.js';
import { live } from '../live.js';
import { activityTable } from './activity.js';

const RANGES = [['1h', 3600e3], ['24h', 86400e3], ['7d', 7 * 86400e3], ['30d', 30 * 86400e3]];
const ACTIONS = ['start', 'stop', 'restart', 'pause', 'unpause', 'kill', 'remove'];

export async function render(main, [id], page) {
  let container = await get(`/containers/${id}`);
  const host = await get(`/hosts/${container.host_id}`);
  if (page.left) return;
  const facts = h('div', { class: 'card' });
  const actions = h('div', { class: 'toolbar', id: 'actions' });
  const status = h('p', { id: 'action-status' });
  const tabs = h('div', { class: 'tabs', id: 'ranges' });
  const resolution = h('span', { class: 'muted' });
  const charts = {
    cpu: lineChart('CPU', percent),
    memory: lineChart('Memory', bytes),
    network: lineChart('Network', rate),
    block: lineChart('Block IO', rate),
  };
  const recent = h('div', { id: 'recent-activity' });
  let range = RANGES[0];

  function drawFacts() {
    const c = container;
    const detail = c.detail || {};
    const labels = Object.entries(detail.labels || {});
    fill(facts, h('dl', { class: 'facts' },
      h('dt', {}, 'State'), h('dd', {}, stateBadge(c.state), c.health ? ` (${c.health})` : ''),
      h('dt', {}, 'Image'), h('dd', { class: 'mono' }, c.image),
      h('dt', {}, 'Host'), h('dd', {}, h('a', { href: `#/hosts/${c.host_id}` }, host.name)),
      h('dt', {}, 'Docker id'), h('dd', { class: 'mono' }, c.docker_id.slice(0, 12)),
      c.compose_project ? [h('dt', {}, 'Compose'), h('dd', {}, `project ${c.compose_project}, service ${c.compose_service ?? '–'}, #${c.compose_number ?? 1}`)] : [],
      h('dt', {}, 'Last exit'), h('dd', {}, c.exit_code === null ? 'never exited' : `code ${c.exit_code}`, c.oom_killed ? h('strong', { class: 'bad' }, ' — killed by the OOM killer') : ''),
      h('dt', {}, 'Restarts'), h('dd', {}, String(c.restart_count)),
      h('dt', {}, 'First seen'), h('dd', {}, time(c.first_seen_ns)),
      c.removed_ns ? [h('dt', {}, 'Removed'), h('dd', {}, time(c.removed_ns))] : [],
      (detail.ports || []).length ? [h('dt', {}, 'Ports'), h('dd', { class: 'mono' }, detail.ports.map((p) => JSON.stringify(p)).join(' '))] : [],
      labels.length ? [h('dt', {}, 'Labels'), h('dd', { id: 'labels' }, labels.map(([key, value]) => h('div', { class: 'mono label' }, `${key}=${value}`)))] : []));
  }

  function drawActions() {
    if (!can('operator') || container.removed_ns) { fill(actions); return; }
    fill(actions, ACTIONS.map((action) => confirmButton(action[0].toUpperCase() + action.slice(1), `${action} ${container.name}?`, async () => {
      const result = await post(`/containers/${id}/actions/${action}`);
      fill(status, h('span', { class: 'ok' }, `${action}: ${result.detail || 'done'}`));
      container = await get(`/containers/${id}`);
      drawFacts();
      drawActions();
      loadActivity();
    }, { class: action === 'remove' || action === 'kill' ? 'danger action' : 'action', 'data-action': action })),
    h('a', { href: `#/profiler/live/${id}`, id: 'profile-link' }, 'Profile live…'));
  }

  let ticket = 0;
  async function loadStats() {
    const mine = ++ticket;
    const to = Date.now();
    const from = to - range[1];
    const series = await get(`/containers/${id}/stats?from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}&max_points=800`);
    if (page.left || mine !== ticket) return;
    const at = (point) => point.time_ns / 1e6;
    const avg = (key) => series.points.map((point) => [at(point), point[key]?.avg ?? null]);
    resolution.textContent = ` resolution ${series.resolution}, ${series.points.length} points`;
    charts.cpu.draw([{ name: 'CPU', points: avg('cpu_percent') }], from, to);
    charts.memory.draw([{ name: 'usage', points: avg('memory_usage_bytes') }, { name: 'working set', points: avg('memory_working_set_bytes') }], from, to);
    charts.network.draw([{ name: 'received', points: avg('net_rx_bytes_per_s') }, { name: 'sent', points: avg('net_tx_bytes_per_s') }], from, to);
    charts.block.draw([{ name: 'read', points: avg('block_read_bytes_per_s') }, { name: 'written', points: avg('block_write_bytes_per_s') }], from, to);
  }

  async function loadActivity() {
    const entries = await get(`/activity?container=${id}&limit=20`);
    if (!page.left) fill(recent, activityTable(entries.items));
  }

  function drawTabs() {
    fill(tabs, RANGES.map((candidate) => h('button', { class: candidate === range ? 'current' : undefined, 'data-range': candidate[0], onclick: () => { range = candidate; drawTabs(); loadStats(); } }, candidate[0])), resolution);
  }

  fill(main, h('h1', { id: 'container-name' }, container.name), facts, actions, status,
    h('h2', {}, 'History'), tabs, h('div', { class: 'grid' }, Object.values(charts).map((chart) => chart.element)),
    h('h2', {}, 'Recent activity'), recent);
  drawFacts();
  drawActions();
  drawTabs();
  await Promise.all([loadStats(), loadActivity()]);
  if (page.left) return;

  // New samples every sweep: the chart of the last hour follows them.
  let pending = null;
  page.onLeave(live.subscribe({ topic: 'stats', host: container.host_id }, (message) => {
    if (message.type !== 'stats' || range !== RANGES[0] || pending) return;
    if (message.items.some((sample) => sample.container_id === container.docker_id)) {
      pending = setTimeout(() => { pending = null; loadStats(); }, 1000);
    }
  }));
  page.onLeave(() => clearTimeout(pending));
}
