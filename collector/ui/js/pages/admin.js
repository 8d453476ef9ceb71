// Administration (admins only): users and their roles, join tokens for new hosts, and
// hosts, whose deletion revokes their certificates and disconnects their agent.

import { h, fill, table, time, ago, confirmButton, errorText } from '../dom.js';
import { get, post, patch, del, currentUser } from '../api.js';

const ROLES = ['viewer', 'operator', 'admin'];

export async function render(main, _params, page) {
  const users = h('div', { id: 'users' });
  const tokens = h('div', { id: 'join-tokens' });
  const hosts = h('div', { id: 'admin-hosts' });
  const problem = h('p', { class: 'error', id: 'admin-error' });
  fill(main, h('h1', {}, 'Administration'),
    h('h2', {}, 'Users'), problem, users, h('h2', {}, 'Join tokens'), tokens, h('h2', {}, 'Hosts'), hosts);

  async function loadUsers() {
    const answer = await get('/users?limit=1000');
    if (page.left) return;
    const email = h('input', { type: 'email', placeholder: 'email', id: 'new-user-email' });
    const password = h('input', { type: 'password', placeholder: 'password (10+ characters)', id: 'new-user-password' });
    const role = h('select', { id: 'new-user-role' }, ROLES.map((r) => h('option', { value: r }, r)));
    const message = h('span');
    fill(users, table([
      ['Email', (u) => u.email],
      ['Role', (u) => (u.id === currentUser()?.id ? u.role : h('select', {
        'data-user': u.id,
        onchange: (event) => change(u, { role: event.target.value }),
      }, ROLES.map((r) => h('option', { value: r, selected: r === u.role }, r))))],
      ['Status', (u) => (u.disabled ? h('span', { class: 'bad' }, 'disabled') : 'active')],
      ['', (u) => (u.id === currentUser()?.id ? h('span', { class: 'muted' }, 'you')
        : h('button', { onclick: () => change(u, { disabled: !u.disabled }) }, u.disabled ? 'Enable' : 'Disable'))],
      ['Created', (u) => time(u.created_ns)],
    ], answer.items, { class: 'users' }),
    h('form', { class: 'toolbar', onsubmit: async (event) => {
      event.preventDefault();
      try {
        await post('/users', { email: email.value, password: password.value, role: role.value });
        await loadUsers();
      } catch (error) { fill(message, errorText(error)); }
    } }, email, password, role, h('button', { class: 'primary', type: 'submit' }, 'Add user'), message));
  }

  async function change(user, changes) {
    fill(problem);
    try { await patch(`/users/${user.id}`, changes); } catch (error) { fill(problem, `${user.email}: ${error.message}`); }
    await loadUsers();
  }

  async function loadTokens(created) {
    const answer = await get('/join-tokens');
    if (page.left) return;
    const host = h('input', { placeholder: 'host name', id: 'token-host' });
    const message = h('span');
    fill(tokens,
      created ? h('div', { class: 'secret', id: 'new-token' }, `Join token for ${created.host} (shown once, works once, until ${time(created.expires_ns)}): `,
        h('code', {}, created.token)) : [],
      table([
        ['Host', (t) => t.host], ['State', (t) => t.state], ['Created', (t) => time(t.created_ns)], ['Expires', (t) => time(t.expires_ns)],
        ['', (t) => (t.state === 'unused' ? confirmButton('Revoke', `revoke the token for ${t.host}?`, async () => { await del(`/join-tokens/${t.id}`); await loadTokens(); }) : '')],
      ], answer, { class: 'tokens' }),
      h('form', { class: 'toolbar', onsubmit: async (event) => {
        event.preventDefault();
        try { await loadTokens(await post('/join-tokens', { host: host.value })); } catch (error) { fill(message, errorText(error)); }
      } }, host, h('button', { class: 'primary', type: 'submit' }, 'Create join token'), message));
  }

  async function loadHosts() {
    const answer = await get('/hosts?limit=1000');
    if (page.left) return;
    fill(hosts, table([
      ['Host', (host) => h('a', { href: `#/hosts/${host.id}` }, host.name)],
      ['Agent', (host) => (host.connected ? 'connected' : `last seen ${ago(host.last_seen_ns)}`)],
      ['', (host) => confirmButton('Delete and revoke', `delete ${host.name}, revoke its certificates and forget its data?`, async () => {
        await del(`/hosts/${host.id}`);
        await loadHosts();
      }, { class: 'danger' })],
    ], answer.items, { class: 'hosts' }));
  }

  await Promise.all([loadUsers(), loadTokens(), loadHosts()]);
}
