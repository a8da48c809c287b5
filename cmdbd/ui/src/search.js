// search.js — the search box: a combobox (WAI-ARIA pattern) over GET /v1/nodes?q=PREFIX.
// Typing asks for the first 10 refs that start with the text; Down/Up move through
// them, Enter opens the chosen node (or, with none chosen, the full result page),
// Escape closes the list.

import { h } from './dom.js';
import { token } from './api.js';

export function initSearch(input, list, { api, query, nodeHref }) {
  let items = [];
  let active = -1;
  let timer = 0;
  let ctl = null;

  const close = () => {
    list.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
    active = -1;
  };
  const mark = (i) => {
    active = i;
    [...list.children].forEach((li, j) => li.setAttribute('aria-selected', String(j === i)));
    if (i >= 0) {
      input.setAttribute('aria-activedescendant', list.children[i].id);
      list.children[i].scrollIntoView({ block: 'nearest' });
    } else {
      input.removeAttribute('aria-activedescendant');
    }
  };
  const open = (ref) => {
    close();
    input.value = '';
    location.hash = nodeHref(ref);
  };
  const show = () => {
    list.replaceChildren(...items.map((n, i) => {
      const li = h('li', { id: 'q-opt-' + i, role: 'option', 'aria-selected': 'false', 'data-ref': n.ref },
        h('span', { class: 'dot h-' + n.health, 'aria-hidden': 'true' }), n.ref,
        h('span', { class: 'sr-only' }, ', ' + n.health));
      li.addEventListener('mousedown', (ev) => { ev.preventDefault(); open(n.ref); });
      return li;
    }));
    if (!items.length) list.append(h('li', { class: 'none', role: 'option', 'aria-disabled': 'true', id: 'q-none' }, 'No node starts with that.'));
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    mark(-1);
  };
  const lookup = async () => {
    const q = input.value.trim();
    if (ctl) ctl.abort();
    if (!q || !token()) { close(); return; }
    ctl = new AbortController();
    try {
      const res = await api('/nodes' + query({ q, limit: 10 }), { signal: ctl.signal });
      if (input.value.trim() !== q) return;
      items = res.items;
      show();
    } catch (err) {
      if (err.name !== 'AbortError') {
        items = [];
        list.replaceChildren(h('li', { class: 'none', role: 'option', 'aria-disabled': 'true', id: 'q-none' }, err.message));
        list.hidden = false;
        input.setAttribute('aria-expanded', 'true');
      }
    }
  };
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(lookup, 120);
  });
  input.addEventListener('keydown', (ev) => {
    const n = items.length;
    if (ev.key === 'ArrowDown') {
      if (list.hidden) lookup(); else if (n) mark((active + 1) % n);
    } else if (ev.key === 'ArrowUp') {
      if (n && !list.hidden) mark(active <= 0 ? n - 1 : active - 1);
    } else if (ev.key === 'Enter') {
      const q = input.value.trim();
      if (active >= 0 && items[active]) open(items[active].ref);
      else if (q) { close(); location.hash = '#/search?' + new URLSearchParams({ q }); }
    } else if (ev.key === 'Escape') {
      close();
    } else {
      return;
    }
    ev.preventDefault();
  });
  input.addEventListener('blur', () => setTimeout(close, 150));
}
