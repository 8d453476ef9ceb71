// Sign in with email and password; afterwards, the page that sent you here.

import { h, fill } from '../dom.js';
import { signIn, currentUser } from '../api.js';
import { go } from '../main.js';

export async function render(main) {
  if (currentUser()) { go('/fleet'); return; }
  const email = h('input', { id: 'email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const message = h('p', { class: 'error', id: 'signin-error' });
  const form = h('form', { class: 'signin card', onsubmit: async (event) => {
    event.preventDefault();
    fill(message);
    try {
      await signIn(email.value, password.value);
      const next = sessionStorage.getItem('dockermon.next');
      sessionStorage.removeItem('dockermon.next');
      go(next && next !== '/signin' ? next : '/fleet');
    } catch (error) {
      fill(message, error.message);
    }
  } },
  h('h1', {}, 'Sign in'),
  h('label', { for: 'email' }, 'Email'), email,
  h('label', { for: 'password' }, 'Password'), password,
  h('button', { class: 'primary', type: 'submit', id: 'sign-in' }, 'Sign in'),
  message);
  fill(main, form);
  email.focus();
}
