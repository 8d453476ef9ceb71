// The WebSocket API: one connection per page, on this origin at /ws.
//
// Pages subscribe with `live.subscribe({topic, host, container}, handler)` and get back a
// function that unsubscribes. The connection identifies with the in-memory access token
// (again whenever the token is renewed), re-subscribes everything after a reconnect, and
// reconnects after a drop with exponential backoff (1 s doubling to 30 s, with jitter),
// showing its state in the header. Nothing polls.

import { accessToken, onSession, refresh } from './api.js';

/** Errors after which the connection's token is no good: renew it, or the session is over. */
const AUTH_ERRORS = new Set(['unauthorized', 'token_expired', 'session_ended']);

const MIN_DELAY = 1000;
const MAX_DELAY = 30000;

class Live {
  constructor() {
    this.socket = null;
    this.wanted = false;
    this.identified = false;
    this.delay = MIN_DELAY;
    this.retry = null;
    this.countdown = null;
    // key → { message, handlers: Set }
    this.subscriptions = new Map();
    this.statusListeners = new Set();
    this.status = { state: 'off' };
    /** Updates handed to subscribers since the page loaded. */
    this.delivered = 0;
  }

  onStatus(listener) {
    this.statusListeners.add(listener);
    listener(this.status, this.delivered);
    return () => this.statusListeners.delete(listener);
  }

  setStatus(status) {
    this.status = status;
    this.statusListeners.forEach((listener) => listener(status, this.delivered));
  }

  start() {
    if (this.wanted) return;
    this.wanted = true;
    this.connect();
  }

  /** Closes the connection for good (sign-out). */
  stop() {
    this.wanted = false;
    clearTimeout(this.retry);
    clearInterval(this.countdown);
    this.subscriptions.clear();
    if (this.socket) this.socket.close(1000, 'signed out');
    this.socket = null;
    this.identified = false;
    this.setStatus({ state: 'off' });
  }

  connect() {
    clearInterval(this.countdown);
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}/ws`);
    this.socket = socket;
    this.setStatus({ state: 'connecting' });
    socket.addEventListener('open', () => this.identify());
    socket.addEventListener('message', (event) => this.received(JSON.parse(event.data)));
    socket.addEventListener('close', () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.identified = false;
      if (this.wanted) this.later();
    });
  }

  later() {
    const delay = Math.min(this.delay, MAX_DELAY) * (0.8 + Math.random() * 0.4);
    this.delay = Math.min(this.delay * 2, MAX_DELAY);
    const at = Date.now() + delay;
    const show = () => this.setStatus({ state: 'reconnecting', seconds: Math.ceil((at - Date.now()) / 1000) });
    show();
    this.countdown = setInterval(show, 1000);
    this.retry = setTimeout(() => this.connect(), delay);
  }

  identify() {
    const token = accessToken();
    if (this.socket?.readyState === WebSocket.OPEN && token) {
      this.socket.send(JSON.stringify({ type: 'identify', token }));
    }
  }

  send(message) {
    if (this.identified) this.socket.send(JSON.stringify(message));
  }

  received(message) {
    switch (message.type) {
      case 'identified':
        if (!this.identified) {
          this.identified = true;
          this.delay = MIN_DELAY;
          this.setStatus({ state: 'live' });
          for (const { message: subscribe } of this.subscriptions.values()) this.send(subscribe);
        }
        break;
      case 'events': case 'stats': case 'inventory':
        this.deliver(`${message.type}:${message.host}:`, message);
        this.deliver(`${message.type}::`, message);
        break;
      case 'profile': case 'profile_state':
        this.deliver(`profile::${message.container}`, message);
        break;
      case 'error':
        // The server closes the connection after these; the reconnect identifies with the
        // renewed token, and a session that cannot be renewed signs the page out.
        if (AUTH_ERRORS.has(message.code)) refresh();
        else this.deliverAll(message);
        break;
      default:
        break;
    }
  }

  deliver(key, message) {
    const entry = this.subscriptions.get(key);
    if (!entry) return;
    this.delivered += 1;
    entry.handlers.forEach((handler) => handler(message));
    this.statusListeners.forEach((listener) => listener(this.status, this.delivered));
  }

  /** Forgets a subscription without telling the server (it ended there). */
  forget(topic, container) {
    if (topic === 'profile') this.subscriptions.delete(`profile::${container}`);
  }

  deliverAll(message) {
    for (const { handlers } of this.subscriptions.values()) handlers.forEach((handler) => handler(message));
  }

  /**
   * Subscribes to `topic` (`events`, `stats`, `inventory`: for `host`, or the whole fleet
   * without one; `profile`: for `container`, which starts or joins its profile session).
   */
  subscribe({ topic, host, container, interval, duration }, handler) {
    const key = topic === 'profile' ? `profile::${container}` : `${topic}:${host ?? ''}:`;
    let entry = this.subscriptions.get(key);
    if (!entry) {
      const message = { type: 'subscribe', topic, host: host ?? null };
      if (container !== undefined) Object.assign(message, { container, interval, duration });
      entry = { message, handlers: new Set() };
      this.subscriptions.set(key, entry);
      this.send(message);
    }
    entry.handlers.add(handler);
    return () => {
      entry.handlers.delete(handler);
      if (entry.handlers.size === 0 && this.subscriptions.get(key) === entry) {
        this.subscriptions.delete(key);
        const message = { type: 'unsubscribe', topic, host: host ?? null };
        if (container !== undefined) message.container = container;
        this.send(message);
      }
    };
  }

  stopProfile(profile) {
    this.send({ type: 'profile_stop', profile });
  }
}

export const live = new Live();

// A renewed token extends the connection; an ended session closes it.
onSession((user) => {
  if (user) {
    live.start();
    live.identify();
  } else {
    live.stop();
  }
});
