// The shell: routes (`#/…`), the header, and each page's life. A page is
// `render(main, params, page)`; it registers what to undo when it is left
// (`page.onLeave(fn)`: WebSocket subscriptions, timers), and checks `page.left` after
// each await so a slow answer never draws over the next page.

import { h, fill, errorText } from './dom.js';
import { currentUser, can, onSession, refresh, signOut, SignedOut } from './api.js';
import { live } from './live.js';
import * as signin from './pages/signin.js';
import * as fleet from './pages/fleet.js';
import * as host from './pages/host.js';
import * as container from './pages/container.js';
import * as profiler from './pages/profiler.js';
import * as activity from './pages/activity.js';
import * as admin from './pages/admin.js';

const ROUTES = [
  [/^\/signin$/, signin, null],
  [/^\/fleet$/, fleet, 'viewer'],
  [/^\/hosts\/(\d+)$/, host, 'viewer'],
  [/^\/containers\/(\d+)$/, container, 'viewer'],
  [/^\/profiler$/, profiler, 'viewer'],
  [/^\/profiler\/live\/(\d+)$/, profiler, 'operator'],
  [/^\/profiles\/(\d+)$/, profiler, 'viewer'],
  [/^\/activity$/, activity, 'viewer'],
  [/^\/admin$/, admin, 'admin'],
];

const NAV = [['#/fleet', 'Fleet', 'viewer'], ['#/profiler', 'Profiler', 'viewer'],
  ['#/activity', 'Activity', 'viewer'], ['#/admin', 'Admin', 'admin']];

let current = null;
/** The first refresh through the cookie, which every page waits for. */
let restoring = null;

function path() {
  return location.hash.replace(/^#/, '') || '/fleet';
}

export function go(to) {
  if (location.hash === `#${to}`) show();
  else location.hash = `#${to}`;
}

/** What the header shows now, so that it is redrawn only when that changes. */
const shown = { nav: null, who: null };

// The header is drawn when the session changes and on every page; redrawing it when
// nothing changed would replace elements under the user's pointer or keyboard focus.
function header() {
  const user = currentUser();
  const links = user ? NAV.filter(([, , role]) => can(role))
    .map(([href, label]) => [href, label, path().startsWith(href.slice(1))]) : [];
  const nav = JSON.stringify(links);
  if (nav !== shown.nav) {
    shown.nav = nav;
    fill(document.getElementById('nav'), links.map(([href, label, current]) => h('a', {
      href, class: current ? 'current' : undefined,
    }, label)));
  }
  const who = JSON.stringify([user?.email, user?.role]);
  if (who !== shown.who) {
    shown.who = who;
    fill(document.getElementById('who'), user ? [
      h('span', { id: 'who-email' }, user.email), h('span', { class: 'muted' }, `(${user.role})`),
      h('button', { id: 'sign-out', onclick: async () => { await signOut(); go('/signin'); } }, 'Sign out'),
    ] : []);
  }
}

async function show() {
  if (current) {
    current.left = true;
    current.leaving.forEach((undo) => undo());
  }
  const page = { left: false, leaving: [], onLeave(fn) { this.leaving.push(fn); } };
  current = page;
  const at = path();
  const main = document.getElementById('main');
  const route = ROUTES.find(([pattern]) => pattern.test(at));
  restoring ??= refresh();
  await restoring;
  if (page.left) return;
  header();
  if (!route) { fill(main, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/fleet' }, 'Back to the fleet'))); return; }
  const [pattern, module, role] = route;
  if (role && !currentUser()) { sessionStorage.setItem('dockermon.next', at); go('/signin'); return; }
  if (role && !can(role)) {
    fill(main, h('h1', {}, 'Not allowed'), h('p', { class: 'error', id: 'forbidden' }, `This page needs the ${role} role.`));
    return;
  }
  fill(main, h('p', { class: 'muted' }, 'Loading…'));
  try {
    await module.render(main, at.match(pattern).slice(1), page, at);
  } catch (error) {
    if (page.left) return;
    if (error instanceof SignedOut) { go('/signin'); return; }
    fill(main, errorText(error));
  }
}

// The header shows the socket's state; `data-delivered` counts the updates it brought.
live.onStatus((status, delivered) => {
  const element = document.getElementById('live-status');
  element.dataset.delivered = delivered;
  element.className = status.state === 'live' ? 'live-on' : status.state === 'off' ? 'live-off' : 'live-wait';
  element.dataset.state = status.state;
  element.textContent = status.state === 'reconnecting'
    ? `live updates lost; reconnecting in ${status.seconds} s`
    : status.state === 'connecting' ? 'connecting…' : '';
});

onSession((user) => {
  header();
  if (!user && current && !path().startsWith('/signin')) go('/signin');
});

window.addEventListener('hashchange', show);
show();

// Every module loaded: boot.js stops counting failed loads (storage may be refused).
document.documentElement.dataset.started = '';
try { sessionStorage.removeItem('dockermon.boot.failures'); } catch { /* nothing counted */ }
