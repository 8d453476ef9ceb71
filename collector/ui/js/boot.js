// Loaded as a classic script before the app's modules, so that it runs even when they do
// not. A module that fails to load fails the whole module graph, and the page would stay on
// "Loading…" for good. The usual cause is passing: a browser aborts the requests in flight
// when its machine's network changes (Chromium's net::ERR_NETWORK_CHANGED, which Docker
// causes whenever it adds a network or a container's interface), or the collector restarted
// mid-load. So the page says what happened and loads itself again, 1 s after the first
// failure and twice as long after each further one (at most 30 s); main.js clears the count
// once the app runs.
'use strict';

(() => {
  const KEY = 'dockermon.boot.failures';
  const failures = Number(sessionStorage.getItem(KEY) || 0);
  let handled = false;

  function failed(what) {
    if (handled) return;
    handled = true;
    sessionStorage.setItem(KEY, String(failures + 1));
    const delay = Math.min(1000 * 2 ** failures, 30000);
    const show = () => {
      const main = document.getElementById('main');
      if (!main) return;
      const text = document.createElement('p');
      text.id = 'boot-failed';
      text.textContent = `Part of Dockermon did not load (${what}). `
        + `Loading again in ${Math.ceil(delay / 1000)} s.`;
      const button = document.createElement('button');
      button.id = 'boot-reload';
      button.textContent = 'Reload now';
      button.addEventListener('click', () => location.reload());
      main.replaceChildren(text, button);
    };
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', show);
    else show();
    setTimeout(() => location.reload(), delay);
  }

  // A module graph that could not be fetched fires `error` at its <script> element; the
  // event does not bubble, so it is caught on the way down. A module that does not parse or
  // throws while it starts fires an ErrorEvent at the window.
  window.addEventListener('error', (event) => {
    const target = event.target;
    if (target instanceof HTMLScriptElement) failed(`could not fetch ${target.src.replace(location.origin, '')} or a module it imports`);
    else if (event instanceof ErrorEvent && !('started' in document.documentElement.dataset)) failed(`${event.message} in ${event.filename.replace(location.origin, '')}`);
  }, true);
})();
