// One host: its agent, its containers, disk usage by type with what is reclaimable, and
// its images, volumes and networks.

import { h, fill, table, bytes, count, ago, time, stateBadge } from '../dom.js';
import { Figures } from '../figures.js';
import { get } from '../api.js';
import { live } from '../live.js';

const USAGE_TYPES = [['images', 'Images'], ['containers', 'Containers'], ['volumes', 'Volumes'], ['build_cache', 'Build cache']];

export async function render(main, [id], page) {
  const [host, containers, latest, usage, images, volumes, networks] = await Promise.all([
    get(`/hosts/${id}`), get(`/containers?host=${id}&limit=1000`), get(`/hosts/${id}/stats/latest`),
    get(`/hosts/${id}/usage/latest`), get(`/hosts/${id}/images?limit=1000`), get(`/hosts/${id}/volumes?limit=1000`),
    get(`/hosts/${id}/networks?limit=1000`),
  ]);
  if (page.left) return;
  const figures = new Figures();
  figures.addLatest(latest);
  const containerList = h('div');
  fill(containerList, table([
    ['Name', (row) => h('a', { href: `#/containers/${row.id}` }, row.name)],
    ['Image', (row) => row.image],
    ['State', (row) => stateBadge(row.state)],
    ['CPU', (row) => figures.cpuCell(row), 'num'],
    ['Memory', (row) => figures.memoryCell(row), 'num'],
  ], containers.items, { class: 'containers' }));
  page.onLeave(live.subscribe({ topic: 'stats', host: Number(id) }, (message) => {
    if (message.type !== 'stats') return;
    figures.addStats(message);
    figures.refresh(containerList, containers.items);
  }));

  const disk = usage;
  const labels = Object.entries(host.labels || {});
  fill(main,
    h('h1', {}, host.name),
    h('div', { class: 'card' }, h('dl', { class: 'facts' },
      h('dt', {}, 'Agent'), h('dd', {}, host.connected ? h('span', { class: 'ok' }, 'connected') : h('span', { class: 'bad' }, `disconnected, last seen ${ago(host.last_seen_ns)}`)),
      h('dt', {}, 'Docker'), h('dd', {}, host.docker_version),
      h('dt', {}, 'Agent version'), h('dd', {}, host.agent_version),
      h('dt', {}, 'Engine id'), h('dd', { class: 'mono' }, host.engine_id),
      h('dt', {}, 'Known since'), h('dd', {}, time(host.created_ns)),
      labels.length ? [h('dt', {}, 'Labels'), h('dd', {}, labels.map(([key, value]) => h('div', { class: 'mono' }, `${key}=${value}`)))] : [])),
    h('h2', {}, `Containers (${count(containers.total)})`), containerList,
    h('h2', {}, 'Disk usage'),
    disk ? [table([
      ['Type', ([, label]) => label],
      ['Count', ([key]) => count(disk[key][0]), 'num'],
      ['Active', ([key]) => count(disk[key][1]), 'num'],
      ['Size', ([key]) => bytes(disk[key][2]), 'num'],
      ['Reclaimable', ([key]) => bytes(disk[key][3]), 'num'],
    ], USAGE_TYPES, { class: 'usage' }), h('p', { class: 'muted' }, `Measured ${ago(disk.time_ns)}; layers ${bytes(disk.layers_bytes)}.`)]
      : h('p', { class: 'muted' }, 'No disk usage reported yet.'),
    h('h2', {}, `Images (${count(images.total)})`),
    table([
      ['Tags', (image) => (image.tags.length ? image.tags.join(', ') : '<none>')],
      ['Id', (image) => h('span', { class: 'mono' }, image.id.replace('sha256:', '').slice(0, 12))],
      ['Size', (image) => bytes(image.size_bytes), 'num'],
      ['Created', (image) => time(image.created_ns)],
    ], images.items),
    h('h2', {}, 'Volumes'),
    table([
      ['Name', (volume) => volume.name], ['Driver', (volume) => volume.driver], ['Mount point', (volume) => volume.mountpoint],
    ], volumes.items),
    h('h2', {}, 'Networks'),
    table([
      ['Name', (network) => network.name], ['Driver', (network) => network.driver], ['Scope', (network) => network.scope],
      ['Internal', (network) => (network.internal ? 'yes' : 'no')],
    ], networks.items));
}
