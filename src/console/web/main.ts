import { setUnauthorizedHandler, signIn, signOut, whoami, ApiError } from './api.js';
import { destroyCharts } from './charts.js';
import { errorBox, h } from './dom.js';
import { budgetsPage } from './pages/budgets.js';
import { costsPage, sessionPage } from './pages/costs.js';
import { experimentPage, experimentsPage } from './pages/experiments.js';
import { learnerPage } from './pages/learner.js';
import { pipelinesPage } from './pages/pipelines.js';

const main = document.getElementById('main')!;
const who = document.getElementById('who')!;
let renderSeq = 0;
/** Pages render only once start-up (whoami) has succeeded: before that, or after it failed, there is no header. */
let state: 'booting' | 'failed' | 'signed-out' | 'ready' = 'booting';

function showSignIn(problem?: string): void {
  state = 'signed-out';
  renderSeq++;
  destroyCharts();
  // Whoever was signed in is not any more: the header must not keep naming them.
  who.replaceChildren();
  const key = h('input', { type: 'password', name: 'key', id: 'signin-key', placeholder: 'API key', autocomplete: 'current-password', 'aria-label': 'API key' });
  const msg = h('div', null, problem ? errorBox(problem) : null);
  main.replaceChildren(
    h(
      'div',
      { class: 'signin card' },
      h('h1', null, 'Sign in'),
      h('p', { class: 'muted' }, 'Paste an API key. The console keeps a session cookie (HttpOnly), so /docs and /admin/queues work in this browser too.'),
      h(
        'form',
        {
          onsubmit: async (e: Event) => {
            e.preventDefault();
            msg.replaceChildren();
            // Checked here, naming the field (the API would answer "body/key", a name the user never sees).
            if (!key.value.trim()) {
              msg.append(errorBox('API key: paste a key to sign in.'));
              key.focus();
              return;
            }
            try {
              await signIn(key.value.trim());
              await boot();
            } catch (err) {
              msg.append(errorBox(err instanceof ApiError && err.status === 401 ? 'That key was not accepted.' : err));
            }
          },
        },
        key,
        h('button', { class: 'primary', type: 'submit' }, 'Sign in'),
      ),
      msg,
    ),
  );
  // Keyboard users start in the key field, not at the top of the navigation.
  key.focus();
}

/** The decoded segments of a console link, or undefined when one is not valid percent-encoding (`%`, `%zz`, a cut UTF-8 sequence). */
function routeOf(hash: string): string[] | undefined {
  try {
    return hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  } catch {
    return undefined;
  }
}

async function render(): Promise<void> {
  const seq = ++renderSeq;
  destroyCharts();
  const parts = routeOf(location.hash);
  const [page = 'experiments', ...rest] = parts ?? ['not-found'];
  for (const a of document.querySelectorAll<HTMLAnchorElement>('#nav a')) a.classList.toggle('active', a.getAttribute('href') === `#/${page}`);
  const root = h('div', { 'data-page': page });
  main.replaceChildren(root);
  try {
    if (page === 'experiments' && rest[0]) await experimentPage(root, rest[0], () => void render());
    else if (page === 'experiments') await experimentsPage(root);
    else if (page === 'learner') await learnerPage(root);
    else if (page === 'budgets') await budgetsPage(root);
    else if (page === 'costs' && rest[0] === 'session' && rest[1]) await sessionPage(root, rest[1]);
    else if (page === 'costs') await costsPage(root);
    else if (page === 'pipelines') await pipelinesPage(root);
    else root.append(h('h1', null, 'Not found'), ...(parts ? [] : [h('p', { class: 'muted' }, 'This link is not valid: a part of it is not valid percent-encoding.')]), h('p', null, h('a', { href: '#/experiments' }, 'Experiments')));
  } catch (e) {
    if (seq === renderSeq && !(e instanceof ApiError && e.status === 401)) root.append(errorBox(e));
  }
  if (seq === renderSeq) root.setAttribute('data-ready', 'true');
}

async function boot(): Promise<void> {
  state = 'booting';
  let me;
  try {
    me = await whoami();
  } catch (e) {
    // No page without knowing who is signed in (the header and Sign out come from it): offer a retry.
    state = 'failed';
    destroyCharts();
    who.replaceChildren();
    main.replaceChildren(
      h('div', { class: 'card', 'data-testid': 'boot-failed' }, h('p', null, 'The console could not start: the server did not say who is signed in.'), errorBox(e), h('button', { class: 'primary', onclick: () => void boot() }, 'Retry')),
    );
    return;
  }
  if (me === 'signed-out') return showSignIn();
  who.replaceChildren();
  if (me.authEnabled) {
    who.append(
      `${me.role ?? 'signed in'}${me.tenant ? ` · ${me.tenant}` : ''}${me.keyId ? ` · key ${me.keyId}` : ''}`,
      h('button', { onclick: async () => {
        try {
          await signOut();
        } catch (e) {
          // A 401 has already shown the sign-in page. Otherwise the session may still be valid: say so, stay signed in.
          if (!(e instanceof ApiError && e.status === 401)) {
            main.querySelector('[data-testid=signout-failed]')?.remove();
            main.prepend(h('div', { 'data-testid': 'signout-failed' }, errorBox(`Sign out failed, you are still signed in: ${e instanceof Error ? e.message : String(e)}${e instanceof ApiError ? ` (${e.code})` : ''}`)));
          }
          return;
        }
        showSignIn();
      } }, 'Sign out'),
    );
  } else who.append('auth off (no keys configured)');
  state = 'ready';
  await render();
}

setUnauthorizedHandler(() => showSignIn('Your session has ended: sign in again.'));
window.addEventListener('hashchange', () => {
  if (state === 'ready') void render();
  else if (state === 'failed') void boot();
});
void boot();
