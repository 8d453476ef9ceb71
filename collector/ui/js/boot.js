// Loaded as a classic script before the app's modules, so that it runs even when they do
// not. A module that fails to load fails the whole module graph, and the page would stay on
// "Loading…" for good. The usual cause is passing: a browser aborts the requests in flight
// when its machine's network changes (Chromium's net::ERR_NETWORK_CHANGED, which Docker
// causes whenever it adds a network or a container's interface), or the collector restarted
// mid-load. So the page says what happened and loads itself again, 1 s after the first
// failure and twice as long after each further one (at most 30 s), and stops trying by
// itself after MAX_RELOADS failures in a row, which no longer look passing. main.js clears
// the count once the app runs.
'use strict';

(() => {
  const KEY = 'dockermon.boot.failures';
  const MAX_RELOADS = 8;
  const started = () => 'started' in document.documentElement.dataset;

  // Storage may be refused (a browser's privacy settings) or hold anything.
  function failuresSoFar() {
    try {
      const count = Number(sessionStorage.getItem(KEY));
      return Number.isFinite(count) && count > 0 ? count : 0;
    } catch {
      return 0;
    }
  }

  let handled = false;
  function failed(what) {
    if (handled) return;
    handled = true;
    const failures = failuresSoFar();
    try {
      sessionStorage.setItem(KEY, String(failures + 1));
    } catch {
      // Without storage every failure counts as the first: reloads stay 1 s apart.
    }
    const retrying = failures < MAX_RELOADS;
    const delay = Math.min(1000 * 2 ** failures, 30000);
    const show = () => {
      const main = document.getElementById('main');
      if (!main) return;
      const text = document.createElement('p');
      text.id = 'boot-failed';
      text.textContent = `Part of Dockermon did not load (${what}). `
        + (retrying ? `Loading again in ${Math.ceil(delay / 1000)} s.` : 'Reload the page to try again.');
      const button = document.createElement('button');
      button.id = 'boot-reload';
      button.textContent = 'Reload now';
      button.addEventListener('click', () => location.reload());
      main.replaceChildren(text, button);
    };
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', show);
    else show();
    if (retrying) setTimeout(() => location.reload(), delay);
  }

  // A module graph that could not be fetched fires `error` at its <script> element; the
  // event does not bubble, so it is caught on the way down. A module that does not parse or
  // throws while it starts fires an ErrorEvent at the window. Once the app runs, neither is
  // about loading it (a script an extension injects, an error in a click handler).
  window.addEventListener('error', (event) => {
    if (started()) return;
    const target = event.target;
    if (target instanceof HTMLScriptElement) {
      failed(`could not fetch ${target.src.replace(location.origin, '')} or a module it imports`);
    } else if (event instanceof ErrorEvent) {
      failed(`${event.message} in ${event.filename.replace(location.origin, '')}`);
    }
  }, true);
})();
