// app.js — the web application: a hash router and one function per view.
//
// Every view has its own URL (#/node/service/x, #/impact/service/x?depth=2, ...), so
// any of them can be pasted into a chat; the person it is sent to enters their own
// token once per tab. Views:
//   #/                      start: search and the other views
//   #/search?q=PREFIX       nodes whose ref starts with PREFIX
//   #/node/REF              a node: health, owners, attributes, labels, edges,
//                           deployments, recent changes
//   #/impact/REF?depth=&types=   its blast radius (GET .../dependents), drawn
//   #/needs/REF?depth=&types=    what it needs (GET .../dependencies), drawn
//   #/rootcause             root cause of every node now down or degraded
//   #/changes               the change feed, live (long poll on /v1/changes)

import { api, ApiError, latestSeq, nodePath, query, setToken, token } from './api.js';
import { h, put, refLink, nodeHref, encRef, healthBadge, time, safeUrl } from './dom.js';
import { drawGraph } from './graph.js';
import { initSearch } from './search.js';

const main = document.getElementById('main');
const IMPACT_TYPES = ['depends_on', 'runs_on', 'connects_to', 'part_of'];
const DRAW_LIMIT = 5000;
const HEALTHS = ['ok', 'degraded', 'down', 'unknown'];

let current = null; // the AbortController of the view on screen

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const qi = raw.indexOf('?');
  const path = qi < 0 ? raw : raw.slice(0, qi);
  const params = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
  const m = /^\/([a-z]+)(?:\/(.*))?$/.exec(path);
  if (!m) return { view: 'home', params };
  let arg = null;
  try { arg = m[2] ? decodeURIComponent(m[2]) : null; } catch { arg = null; }
  return { view: m[1], arg, params };
}

function setTitle(t) {
  document.title = t ? t + ' — cmdb' : 'cmdb';
}

function section(title, ...content) {
  const id = 's-' + title.toLowerCase().replace(/[^a-z]+/g, '-').replace(/-$/, '');
  return h('section', { 'aria-labelledby': id }, h('h2', { id }, title), ...content);
}

function table(caption, head, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty' }, empty || 'None.');
  return h('div', { class: 'scroll' }, h('table', {},
    caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c, i) => h('td', { 'data-label': head[i] }, c)))))));
}

function json(v) {
  return typeof v === 'string' ? v : JSON.stringify(v, null, 1);
}

function errorBox(err) {
  if (err.name === 'AbortError') return null;
  const msg = err instanceof ApiError ? `${err.status}: ${err.message}` : String(err.message || err);
  return h('p', { class: 'error', role: 'alert' }, msg);
}

/* Runs a view; a 401 shows the token prompt, other errors are shown in place. */
async function render() {
  if (current) current.abort();
  const ctl = new AbortController();
  current = ctl;
  const route = parseHash();
  if (!token() && route.view !== 'home') {
    tokenPrompt();
    return;
  }
  const views = { home, search, node: nodeView, impact: graphView, needs: graphView, rootcause, changes };
  const fn = views[route.view] || notFound;
  try {
    await fn(route, ctl.signal);
  } catch (err) {
    if (ctl.signal.aborted) return;
    if (err instanceof ApiError && err.status === 401) {
      tokenPrompt(err.message);
      return;
    }
    main.append(errorBox(err) || '');
  }
}

function tokenPrompt(why) {
  setTitle('Token');
  const input = h('input', { id: 'tok', type: 'password', autocomplete: 'off', spellcheck: 'false' });
  const save = () => {
    const v = input.value.trim();
    if (!v) return;
    setToken(v);
    render();
  };
  input.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') save(); });
  put(main,
    h('h1', {}, 'API token'),
    why ? h('p', { class: 'error', role: 'alert' }, why) : null,
    h('p', {}, 'The map is read with a cmdb token (scope read or more). It is kept in this tab only and sent only to this server.'),
    h('div', { class: 'field' }, h('label', { for: 'tok' }, 'Token'), input,
      h('button', { type: 'button', id: 'tok-save', onclick: save }, 'Use token')));
  input.focus();
}

function notFound() {
  setTitle('Not found');
  put(main, h('h1', {}, 'No such page'), h('p', {}, h('a', { href: '#/' }, 'Start page')));
}

async function home() {
  setTitle('');
  put(main,
    h('h1', {}, 'Service map'),
    h('p', {}, 'Type the start of a ref in the search box (', h('kbd', {}, '/'), ' focuses it; arrow keys choose, Enter opens).'),
    h('ul', { class: 'links' },
      h('li', {}, h('a', { href: '#/rootcause' }, 'Root cause'), ' — what explains every node now down or degraded'),
      h('li', {}, h('a', { href: '#/changes' }, 'Change feed'), ' — every change to the map, live')),
    token() ? null : h('p', {}, h('button', { type: 'button', onclick: tokenPrompt }, 'Enter a token')));
}

async function search(route, signal) {
  const q = route.params.get('q') || '';
  setTitle('Search ' + q);
  put(main, h('h1', {}, 'Nodes starting with “', q, '”'), h('p', {}, 'Loading…'));
  const res = await api('/nodes' + query({ q, limit: 100 }), { signal });
  put(main, h('h1', {}, 'Nodes starting with “', q, '”'),
    table('Matching nodes', ['Ref', 'Health', 'Updated'],
      res.items.map((n) => [refLink(n.ref), healthBadge(n.health), time(n.updated_at)]), 'No node matches.'),
    res.next_cursor ? h('p', {}, 'More than 100 match: type more of the ref.') : null);
}

/* ------------------------------------------------------------------ a node */

function contacts(attrs) {
  const out = [];
  for (const k of ['email', 'chat', 'oncall', 'phone']) {
    const v = attrs && attrs[k];
    if (typeof v !== 'string' || !v) continue;
    let link = null;
    if (k === 'email') link = safeUrl('mailto:' + v);
    else if (k === 'phone') link = 'tel:' + v.replace(/[^0-9+]/g, '');
    else link = safeUrl(v);
    out.push(h('span', { class: 'contact' }, h('span', { class: 'k' }, k + ': '),
      link ? h('a', { href: link }, v) : v));
  }
  return out.length ? out : '—';
}

function ownersTable(owners) {
  return table('Owners', ['Owner', 'Contacts', 'Rule', 'Chain'],
    owners.map((o) => [refLink(o.ref), h('div', { class: 'contacts' }, contacts(o.attributes)),
      h('code', {}, o.rule),
      h('span', { class: 'chain' }, (o.via || []).flatMap((r, i) => (i ? [' → ', refLink(r)] : [refLink(r)])))]),
    'No owner found by any rule (direct, part_of, runs_on).');
}

function kv(obj) {
  const keys = Object.keys(obj || {});
  if (!keys.length) return h('p', { class: 'empty' }, 'None.');
  return h('dl', { class: 'kv' }, keys.sort().flatMap((k) => [h('dt', {}, k), h('dd', {}, h('code', {}, json(obj[k])))]));
}

function edgeRows(edges, ref, dir) {
  return edges.filter((e) => (dir === 'out' ? e.from === ref : e.to === ref))
    .map((e) => [h('code', {}, e.type), refLink(dir === 'out' ? e.to : e.from),
      Object.keys(e.attributes || {}).length ? h('code', {}, JSON.stringify(e.attributes)) : '',
      (e.sources || []).join(', ')]);
}

function changeRow(c) {
  const isNode = c.op.startsWith('node.');
  return [String(c.seq), time(c.at), h('code', {}, c.op), isNode && c.op !== 'node.deleted' ? refLink(c.ref) : c.ref,
    c.actor || '', c.source || ''];
}

/* The node's latest changes: the feed has no filter by ref, so the page reads it
 * backwards, a page at a time, until it has 20 or has read CHANGES_SCAN changes. */
const CHANGES_SCAN = 3000;
async function recentChanges(ref, signal) {
  const latest = await latestSeq(signal);
  const touches = (c) => c.ref === ref || [c.before, c.after].some((x) => x && (x.from === ref || x.to === ref));
  const found = [];
  let upto = latest;
  while (upto > 0 && latest - upto < CHANGES_SCAN && found.length < 20) {
    const since = Math.max(0, upto - 1000);
    const res = await api('/changes' + query({ since, limit: 1000 }), { signal });
    found.push(...res.changes.filter((c) => c.seq <= upto && touches(c)).reverse());
    upto = since;
  }
  return { changes: found.slice(0, 20), scanned: latest - upto };
}

async function nodeView(route, signal) {
  const ref = route.arg || '';
  setTitle(ref);
  put(main, h('h1', {}, ref), h('p', {}, 'Loading…'));
  const path = nodePath(ref);
  const [n, edges, deps] = await Promise.all([
    api(path, { signal }),
    api(path + '/edges?direction=both', { signal }),
    api('/deployments' + query({ node: ref, limit: 10 }), { signal }),
  ]);
  const changesBox = h('div', {}, h('p', {}, 'Loading…'));
  put(main,
    h('h1', {}, h('span', { class: 'kind' }, n.kind + '/'), n.name),
    h('p', { class: 'status' }, healthBadge(n.health), ' ', n.health_reason || '',
      n.health_at ? [' (since ', time(n.health_at), ')'] : '', n.orphan ? h('span', { class: 'badge orphan' }, 'orphan') : ''),
    h('p', { class: 'actions' },
      h('a', { class: 'button', href: '#/impact/' + encRef(ref) }, 'Blast radius'),
      h('a', { class: 'button', href: '#/needs/' + encRef(ref) }, 'Needs')),
    section('Owners', ownersTable(n.owners || [])),
    h('div', { class: 'cols' },
      section('Attributes', kv(n.attributes)),
      section('Labels', kv(n.labels))),
    section(`Edges out (${n.edges ? n.edges.out : 0})`,
      table('Edges out', ['Type', 'To', 'Attributes', 'Sources'], edgeRows(edges.edges, ref, 'out'))),
    section(`Edges in (${n.edges ? n.edges.in : 0})`,
      table('Edges in', ['Type', 'From', 'Attributes', 'Sources'], edgeRows(edges.edges, ref, 'in'))),
    section('Recent deployments',
      table('Recent deployments', ['Applied', 'Version', 'Revision', 'Env', 'Status', 'Actor', 'Source'],
        deps.items.map((d) => [time(d.applied_at), d.version || '', d.revision || '', d.environment || '',
          d.status || '', d.actor || '', d.source]))),
    section('Recent changes', changesBox),
    section('Bookkeeping', kv({ id: n.id, version: n.version, sources: n.sources, created_at: n.created_at,
      updated_at: n.updated_at, last_seen_at: n.last_seen_at })));
  const { changes, scanned } = await recentChanges(ref, signal);
  put(changesBox, table('Recent changes', ['Seq', 'At', 'Op', 'Ref', 'Actor', 'Source'], changes.map(changeRow),
    `No change to this node among the map's last ${scanned} changes.`));
}

/* ------------------------------------------------------------------ graphs */

async function graphView(route, signal) {
  const ref = route.arg || '';
  const impact = route.view === 'impact';
  const p = route.params;
  const depth = /^[0-9]+$/.test(p.get('depth') || '') ? p.get('depth') : '';
  const types = (p.get('types') || IMPACT_TYPES.join(',')).split(',').filter((t) => IMPACT_TYPES.includes(t));
  const title = impact ? 'Blast radius of ' + ref : 'What ' + ref + ' needs';
  setTitle(title);
  const t0 = performance.now();

  const go = (d, ts) => {
    const qs = query({ depth: d, types: ts.length === IMPACT_TYPES.length ? '' : ts.join(',') });
    location.replace('#/' + route.view + '/' + encRef(ref) + qs);
  };
  const depthSel = h('select', { id: 'depth' },
    ['', '1', '2', '3', '4', '5', '8'].map((d) => h('option', { value: d, selected: d === depth }, d || 'all')));
  depthSel.addEventListener('change', () => go(depthSel.value, types));
  const boxes = IMPACT_TYPES.map((t) => {
    const cb = h('input', { type: 'checkbox', id: 't-' + t, value: t, checked: types.includes(t) });
    cb.addEventListener('change', () => go(depth, boxes.filter((b) => b.checked).map((b) => b.value)));
    return cb;
  });
  const host = h('div', { class: 'graph-host', id: 'graph' }, h('p', {}, 'Loading…'));
  const summary = h('p', { class: 'summary', role: 'status' });
  const list = h('div', {});
  put(main,
    h('h1', {}, impact ? 'Blast radius of ' : 'What ', refLink(ref), impact ? '' : ' needs'),
    h('p', { class: 'hint' }, impact
      ? 'Every node impacted if it fails, transitively (left to right: failure spreads outwards).'
      : 'Everything it needs to work, transitively.',
    ' ', h('a', { href: '#/' + (impact ? 'needs' : 'impact') + '/' + encRef(ref) }, impact ? 'Show its needs' : 'Show its blast radius')),
    h('div', { class: 'filters', role: 'group', 'aria-label': 'Filters' },
      h('label', { for: 'depth' }, 'Depth '), depthSel,
      h('fieldset', {}, h('legend', {}, 'Edge types'),
        boxes.map((cb) => h('label', { class: 'check', for: cb.id }, cb, ' ', cb.value)))),
    summary, legend(), host, list);
  if (!types.length) {
    put(host, h('p', { class: 'empty' }, 'Choose at least one edge type.'));
    return;
  }
  const walkPath = nodePath(ref) + (impact ? '/dependents' : '/dependencies') +
    query({ depth, types: types.join(','), limit: DRAW_LIMIT });
  const graphPath = '/graph' + query({ root: ref, depth: depth || 100000, direction: impact ? 'dependents' : 'dependencies' });
  const [walk, sub] = await Promise.all([api(walkPath, { signal }), api(graphPath, { signal })]);
  const t1 = performance.now();
  const inSet = new Set([ref, ...walk.nodes.map((n) => n.ref)]);
  const health = new Map(sub.nodes.map((n) => [n.ref, n.health]));
  const edges = sub.edges.filter((e) => types.includes(e.type) && inSet.has(e.from) && inSet.has(e.to));
  const canvas = drawGraph(host, { root: ref, nodes: walk.nodes, edges, health });
  canvas.setAttribute('data-fetch-ms', String(Math.round(t1 - t0)));
  canvas.setAttribute('data-draw-ms', String(Math.round(performance.now() - t1)));
  host.prepend(graphControls(canvas));
  put(summary, `${walk.count} node${walk.count === 1 ? '' : 's'} `, impact ? 'depend on it' : 'needed',
    walk.truncated ? ` — drawing the first ${walk.nodes.length}` : '', '.');
  // Ready once the frame with the drawing is on screen; the list below it comes after.
  requestAnimationFrame(() => setTimeout(() => {
    if (signal.aborted) return;
    canvas.setAttribute('data-render-ms', String(Math.round(performance.now() - t0)));
    canvas.setAttribute('data-ready-at', String(performance.now()));
    canvas.setAttribute('data-ready', 'true');
    nodeList(list, walk.nodes, health);
  }, 0));
}

function legend() {
  return h('ul', { class: 'legend', 'aria-label': 'Legend' },
    HEALTHS.map((st) => h('li', {}, h('span', { class: 'dot h-' + st }), st)),
    IMPACT_TYPES.map((t) => h('li', {}, h('span', { class: 'line e-' + t }), t)));
}

function graphControls(canvas) {
  const b = (label, text, fn) => h('button', { type: 'button', 'aria-label': label, onclick: fn }, text);
  return h('div', { class: 'graph-tools', role: 'toolbar', 'aria-label': 'Graph view' },
    b('Zoom in', '+', () => canvas.zoomBy(1.4)), b('Zoom out', '−', () => canvas.zoomBy(1 / 1.4)),
    b('Fit', 'Fit', () => canvas.fit()),
    h('span', { class: 'hint' }, 'Drag to pan, wheel to zoom, click a node to open it.'));
}

function nodeList(host, nodes, health) {
  const SHOW = 100;
  const rows = (all) => (all ? nodes : nodes.slice(0, SHOW)).map((n) => [refLink(n.ref), String(n.depth),
    healthBadge(health.get(n.ref)), n.via ? h('span', {}, refLink(n.via.from), ' ', h('code', {}, n.via.type), ' ', refLink(n.via.to)) : '']);
  const draw = (all) => {
    put(host, section('Nodes', table('Nodes drawn', ['Ref', 'Depth', 'Health', 'Reached via'], rows(all), 'None.'),
      !all && nodes.length > SHOW ? h('button', { type: 'button', onclick: () => draw(true) }, `Show all ${nodes.length}`) : null));
  };
  draw(false);
}

/* ------------------------------------------------------------------ root cause */

async function failingNodes(signal) {
  const out = [];
  for (const health of ['down', 'degraded']) {
    let cursor = null;
    for (let page = 0; page < 10; page++) {
      const res = await api('/nodes' + query({ health, limit: 1000, cursor }), { signal });
      out.push(...res.items);
      cursor = res.next_cursor;
      if (!cursor) break;
    }
  }
  return out;
}

async function rootcause(route, signal) {
  setTitle('Root cause');
  put(main, h('h1', {}, 'Root cause'), h('p', {}, 'Loading…'));
  const failing = await failingNodes(signal);
  if (!failing.length) {
    put(main, h('h1', {}, 'Root cause'), h('p', { class: 'ok-box', id: 'rc-none' }, 'Nothing is down or degraded.'));
    return;
  }
  const rc = await api('/rootcause', { method: 'POST', body: { failing: failing.map((n) => n.ref) }, signal });
  const healthOf = new Map(failing.map((n) => [n.ref, n.health]));
  put(main, h('h1', {}, 'Root cause'),
    h('p', {}, `${failing.length} node${failing.length === 1 ? ' is' : 's are'} down or degraded.`),
    section('Root causes', rc.root_causes.length
      ? h('ul', { class: 'causes', id: 'rc-causes' }, rc.root_causes.map((r) => h('li', {}, refLink(r), ' ', healthBadge(healthOf.get(r) || 'down'))))
      : h('p', { class: 'empty' }, 'No failing node is free of failing dependencies (a cycle?): see the candidates.')),
    section('Smallest set that explains every failure', h('ul', { id: 'rc-cover' }, rc.minimal_cover.map((r) => h('li', {}, refLink(r))))),
    section('Failing', table('Failing nodes', ['Ref', 'Health', 'Reason', 'Since'],
      failing.map((n) => [refLink(n.ref), healthBadge(n.health), n.health_reason || '', time(n.health_at)]))),
    section('Candidates', table('Candidates', ['Ref', 'Health', 'Explains', 'Depth'],
      rc.candidates.slice(0, 100).map((c) => [refLink(c.ref), healthBadge(c.health),
        h('span', { title: c.explains.join(', ') }, String(c.explains.length)), String(c.depth)]))));
}

/* ------------------------------------------------------------------ change feed */

async function changes(route, signal) {
  setTitle('Changes');
  const status = h('p', { class: 'summary', role: 'status', 'aria-live': 'polite' }, 'Connecting…');
  const list = h('tbody', { id: 'feed' });
  put(main, h('h1', {}, 'Change feed'), h('p', { class: 'hint' }, 'The latest changes, newest first; new ones appear as they are committed.'),
    status, h('div', { class: 'scroll' }, h('table', {}, h('caption', { class: 'sr-only' }, 'Changes'),
      h('thead', {}, h('tr', {}, ['Seq', 'At', 'Op', 'Ref', 'Actor', 'Source'].map((c) => h('th', { scope: 'col' }, c)))), list)));
  let since = Math.max(0, (await latestSeq(signal)) - 50);
  let first = true;
  let seen = 0;
  while (!signal.aborted) {
    let res;
    try {
      res = await api('/changes' + query({ since, limit: 200, wait: first ? 0 : 25 }), { signal });
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status === 401) throw err;
      put(status, 'Disconnected (', err.message, '); retrying…');
      await new Promise((r) => setTimeout(r, 3000));
      continue;
    }
    for (const c of res.changes) {
      list.prepend(h('tr', { 'data-seq': c.seq, class: first ? '' : 'new' }, changeRow(c).map((x) => h('td', {}, x))));
      seen++;
    }
    while (list.children.length > 500) list.lastChild.remove();
    since = res.next;
    put(status, first ? 'Live: waiting for changes.' : `Live: ${seen} change${seen === 1 ? '' : 's'} shown.`);
    status.setAttribute('data-since', String(since));
    first = false;
  }
}

/* ------------------------------------------------------------------ start */

document.getElementById('token-btn').addEventListener('click', () => {
  if (token() && !confirm('Forget the token kept in this tab?')) return;
  setToken('');
  tokenPrompt();
});
document.addEventListener('keydown', (ev) => {
  const t = ev.target;
  if (ev.key === '/' && !(t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement)) {
    ev.preventDefault();
    document.getElementById('q').focus();
  }
});
// A new view takes the focus (a screen reader starts reading it); a filter change
// (same view, same node) leaves it on the control that changed it.
let shown = '';
window.addEventListener('hashchange', () => {
  const r = parseHash();
  const key = r.view + ' ' + r.arg;
  render();
  if (key !== shown) main.focus({ preventScroll: true });
  shown = key;
});
document.getElementById('skip').addEventListener('click', (ev) => {
  ev.preventDefault(); // its #main would be taken for a route
  main.focus();
});
initSearch(document.getElementById('q'), document.getElementById('q-list'), { api, query, nodeHref });
shown = parseHash().view + ' ' + parseHash().arg;
render();
