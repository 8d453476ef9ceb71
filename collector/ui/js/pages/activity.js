// The activity log: Docker events and people's actions, newest first, with filters and
// pages. New Docker events (the WebSocket's `events` topic) bring the first page up to
// date, at most once a second.

import { h, fill, table, time, pager } from '../dom.js';
import { get, query, can, currentUser } from '../api.js';
import { live } from '../live.js';

const PAGE = 50;

/**
 * Who did it: for people's actions the user (their email is shown to admins only, and to
 * you for your own), else what Docker's event is about.
 */
function actor(entry) {
  if (entry.user_id !== null) {
    const me = currentUser();
    if (entry.attributes.user) return entry.attributes.user;
    return entry.user_id === me?.id ? `you (${me.email})` : `user #${entry.user_id}`;
  }
  return entry.actor_name || entry.actor_id.slice(0, 12);
}

export function activityTable(entries) {
  return table([
    ['Time', (entry) => time(entry.time_ns)],
    ['Kind', (entry) => entry.kind],
    ['Action', (entry) => entry.action],
    ['By / on', (entry) => actor(entry)],
    ['Container', (entry) => (entry.container_id ? h('a', { href: `#/containers/${entry.container_id}` }, `#${entry.container_id}`) : '')],
    ['Details', (entry) => Object.entries(entry.attributes).filter(([key]) => key !== 'user')
      .map(([key, value]) => h('div', { class: 'mono' }, `${key}=${value}`))],
  ], entries, { class: 'activity' });
}

export async function render(main, _params, page) {
  const kind = h('select', { id: 'kind-filter' }, h('option', { value: '' }, 'Every kind'),
    ['container', 'image', 'volume', 'network', 'daemon', 'host', 'profile', 'resource', 'gap', 'auth'].filter((k) => k !== 'auth' || can('admin'))
      .map((k) => h('option', { value: k }, k)));
  const action = h('input', { id: 'action-filter', placeholder: 'Action (start, die, stop…)' });
  const list = h('div', { id: 'activity' });
  fill(main, h('h1', {}, 'Activity'), h('div', { class: 'toolbar' }, kind, action), list);
  let offset = 0;
  let loading = 0;

  async function load() {
    const ticket = ++loading;
    const answer = await get(`/activity${query({ offset, limit: PAGE, kind: kind.value, action: action.value.trim() })}`);
    if (page.left || ticket !== loading) return;
    fill(list, activityTable(answer.items), pager(offset, PAGE, answer.total, (next) => { offset = next; load(); }));
  }

  let typing = null;
  let pending = null;
  kind.addEventListener('change', () => { offset = 0; load(); });
  action.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(() => { offset = 0; load(); }, 300); });
  page.onLeave(live.subscribe({ topic: 'events' }, (message) => {
    if (message.type === 'events' && offset === 0 && !pending) {
      pending = setTimeout(() => { pending = null; load(); }, 1000);
    }
  }));
  page.onLeave(() => { clearTimeout(typing); clearTimeout(pending); });
  await load();
}
