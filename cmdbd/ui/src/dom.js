// dom.js — building the page without HTML strings: every text goes in as a text node,
// so nothing from the map is ever parsed as markup (the CSP enforces Trusted Types with
// no policy, which makes innerHTML and its kin throw).

function fill(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/* h('a', {href: '#/', class: 'x'}, 'text', child...) */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/* Replaces el's children. */
export function put(el, ...children) {
  el.replaceChildren();
  return fill(el, null, children);
}

/* "#/node/service/x": a ref in a URL keeps its slashes readable, the rest encoded. */
export function encRef(ref) {
  return encodeURIComponent(ref).replace(/%2F/g, '/');
}

export function nodeHref(ref) {
  return '#/node/' + encRef(ref);
}

export function refLink(ref, attrs) {
  return h('a', { href: nodeHref(ref), class: 'ref', ...(attrs || {}) }, ref);
}

export function healthBadge(health) {
  const v = health || 'unknown';
  return h('span', { class: 'badge h-' + v }, v);
}

export function time(t) {
  if (!t) return '—';
  const d = new Date(t);
  return h('time', { datetime: t, title: t }, isNaN(d) ? t : d.toLocaleString());
}

/* A URL in an attribute becomes a link only when it is http(s) or mailto. */
export function safeUrl(v) {
  try {
    const u = new URL(v);
    return ['http:', 'https:', 'mailto:'].includes(u.protocol) ? u.href : null;
  } catch {
    return null;
  }
}
