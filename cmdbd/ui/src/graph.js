// graph.js — a blast radius (or a node's needs) drawn as a layered graph on a canvas.
//
// The walk answers say where every node belongs: its depth is its least distance from
// the root, and `via` names the edge that reached it. So the layout needs no general
// graph-drawing library: one column per depth, the nodes of a column sorted by the
// position of the node that reached them (children sit beside their parent), and a
// column with more nodes than fit wrapped into several. That is a sort per column.
//
// It is drawn on a <canvas>: thousands of SVG elements (and dashed strokes) take
// seconds to paint in a software-rendered browser, a canvas a few milliseconds. A
// frame paints the edges (one path per type), the nodes (one path per health state)
// and, once zoomed in far enough to read them, the labels of the nodes in view. The
// canvas is an image to assistive technology; the same nodes are listed as links
// below it (app.js), which is also the keyboard's way in.

import { h, nodeHref } from './dom.js';

const COL_W = 240;
const ROW_H = 26;
const GAP = 70;
const LABEL_MAX = 30;
const R = 6;
const COLOURS = { ok: '#1a7f37', degraded: '#9a6700', down: '#cf222e', unknown: '#6e7781' };
export const EDGE_STYLE = {
  depends_on: { colour: '#57606a', dash: [] },
  runs_on: { colour: '#8250df', dash: [6, 3] },
  connects_to: { colour: '#0969da', dash: [2, 3] },
  part_of: { colour: '#bf8700', dash: [10, 3, 2, 3] },
};
const DASH_MAX = 400; // above this many edges, dashes cost more than they tell

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/* nodes: [{ref, depth, parent}] (root excluded) → Map ref → {x, y}, and the bounds. */
export function layout(rootRef, nodes) {
  const layers = [[{ ref: rootRef, depth: 0, parent: null }]];
  for (const n of nodes) (layers[n.depth] || (layers[n.depth] = [])).push(n);
  const rowsMax = Math.max(16, Math.ceil(Math.sqrt(nodes.length + 1) * 1.5));
  const pos = new Map();
  const at = new Map();
  let x = 0;
  let minY = 0;
  let maxY = 0;
  for (const layer of layers) {
    if (!layer) continue;
    layer.sort((a, b) => (pos.get(a.parent) ?? 0) - (pos.get(b.parent) ?? 0) || cmp(a.ref, b.ref));
    const cols = Math.ceil(layer.length / rowsMax);
    const rows = Math.ceil(layer.length / cols);
    layer.forEach((n, i) => {
      pos.set(n.ref, i);
      const y = (i % rows - (rows - 1) / 2) * ROW_H;
      at.set(n.ref, { x: x + Math.floor(i / rows) * COL_W, y });
      minY = Math.min(minY, y);
      maxY = Math.max(maxY, y);
    });
    x += cols * COL_W + GAP;
  }
  return { at, bounds: { x: -30, y: minY - 30, w: x - GAP + COL_W, h: maxY - minY + 60 } };
}

const label = (ref) => (ref.length > LABEL_MAX ? ref.slice(0, LABEL_MAX - 1) + '…' : ref);

/*
 * Draws into `host` (emptied): {root, nodes: a walk answer's nodes, edges: [{from,
 * type, to}] among them, health: Map ref → state}. Returns the <canvas>, which has
 * zoomBy(f), pan(fx, fy), fit(), and, for tests and tooltips, scene (the nodes drawn,
 * root first) and pointOf(ref) (its client coordinates).
 */
export function drawGraph(host, { root, nodes, edges, health }) {
  const parentOf = (n) => (n.via ? (n.via.from === n.ref ? n.via.to : n.via.from) : root);
  const { at, bounds } = layout(root, nodes.map((n) => ({ ref: n.ref, depth: n.depth, parent: parentOf(n) })));
  const scene = [root, ...nodes.map((n) => n.ref)].map((ref, i) => ({
    ref, ...at.get(ref), health: health.get(ref) || 'unknown', depth: i ? nodes[i - 1].depth : 0,
  }));
  const lines = new Map();
  for (const e of edges) {
    const a = at.get(e.from);
    const b = at.get(e.to);
    if (!a || !b || !EDGE_STYLE[e.type]) continue;
    (lines.get(e.type) || lines.set(e.type, []).get(e.type)).push(a.x, a.y, b.x, b.y);
  }
  const dashed = edges.length <= DASH_MAX;

  const canvas = h('canvas', {
    class: 'graph', role: 'img', 'data-nodes': nodes.length, tabindex: '0',
    'aria-label': `Graph of ${nodes.length} nodes around ${root}. Arrow keys pan, plus and minus zoom, 0 fits; the list below has the same nodes as links.`,
  });
  const tip = h('div', { class: 'graph-tip', hidden: true, 'aria-hidden': 'true' });
  host.replaceChildren(canvas, tip);
  const ctx = canvas.getContext('2d');
  let view = { x: 0, y: 0, k: 1 }; // screen = (world - view) * k
  let frame = 0;

  const fitView = () => {
    const w = canvas.clientWidth || 800;
    const ht = canvas.clientHeight || 500;
    const k = Math.min(w / bounds.w, ht / bounds.h, 1.5);
    view = { k, x: bounds.x - (w / k - bounds.w) / 2, y: bounds.y - (ht / k - bounds.h) / 2 };
  };
  const paint = () => {
    frame = 0;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const ht = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(ht * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(ht * dpr);
    }
    const k = view.k * dpr;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(k, 0, 0, k, -view.x * k, -view.y * k);
    const x0 = view.x - COL_W;
    const x1 = view.x + w / view.k + R;
    const y0 = view.y - R;
    const y1 = view.y + ht / view.k + R;
    const inView = (p) => p.x >= x0 && p.x <= x1 && p.y >= y0 && p.y <= y1;

    // Zoomed far out, a node is a pixel or two: squares and straight edges look the
    // same there and cost a fraction to rasterise.
    const tiny = R * view.k < 2.5;
    ctx.lineWidth = 1.2 / view.k;
    for (const [type, xy] of lines) {
      const st = EDGE_STYLE[type];
      ctx.strokeStyle = st.colour;
      ctx.setLineDash(dashed ? st.dash.map((d) => d / view.k) : []);
      ctx.beginPath();
      for (let i = 0; i < xy.length; i += 4) {
        ctx.moveTo(xy[i], xy[i + 1]);
        if (tiny) {
          ctx.lineTo(xy[i + 2], xy[i + 3]);
        } else {
          const mx = (xy[i] + xy[i + 2]) / 2;
          ctx.bezierCurveTo(mx, xy[i + 1], mx, xy[i + 3], xy[i + 2], xy[i + 3]);
        }
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
    let painted = 0;
    for (const [st, colour] of Object.entries(COLOURS)) {
      ctx.fillStyle = colour;
      ctx.beginPath();
      for (const p of scene) {
        if (p.health !== st || !inView(p)) continue;
        if (tiny) {
          ctx.rect(p.x - R, p.y - R, 2 * R, 2 * R);
        } else {
          ctx.moveTo(p.x + R, p.y);
          ctx.arc(p.x, p.y, R, 0, 2 * Math.PI);
        }
        painted++;
      }
      ctx.fill();
    }
    ctx.lineWidth = 2 / view.k; // down is also a black ring: not told by colour alone
    ctx.strokeStyle = '#000';
    ctx.beginPath();
    for (const p of scene) {
      if (p.health === 'down' && inView(p)) {
        ctx.moveTo(p.x + R + 1, p.y);
        ctx.arc(p.x, p.y, R + 1, 0, 2 * Math.PI);
      }
    }
    ctx.stroke();
    const r0 = scene[0];
    ctx.lineWidth = 3 / view.k;
    ctx.strokeStyle = '#0b3d91';
    ctx.beginPath();
    ctx.arc(r0.x, r0.y, R + 4, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.fillStyle = '#1f2328';
    ctx.font = `${Math.max(14, 14 / view.k)}px system-ui, sans-serif`;
    ctx.fillText(r0.ref, r0.x - R, r0.y - R - 8 / view.k);
    if (view.k * 12 >= 7) { // legible: labels, on a white halo so edges do not cross them
      ctx.font = '12px system-ui, sans-serif';
      ctx.lineWidth = 3;
      ctx.strokeStyle = '#fff';
      ctx.lineJoin = 'round';
      for (const p of scene) {
        if (p === r0 || !inView(p)) continue;
        ctx.strokeText(label(p.ref), p.x + R + 4, p.y + 4);
        ctx.fillText(label(p.ref), p.x + R + 4, p.y + 4);
      }
    }
    canvas.setAttribute('data-painted', String(painted));
  };
  const redraw = () => { if (!frame) frame = requestAnimationFrame(paint); };

  const toWorld = (cx, cy) => {
    const r = canvas.getBoundingClientRect();
    return [view.x + (cx - r.left) / view.k, view.y + (cy - r.top) / view.k];
  };
  const hit = (cx, cy) => {
    const [wx, wy] = toWorld(cx, cy);
    const lim = (R + 4) / Math.min(view.k, 1) + 2;
    let best = null;
    let bd = lim * lim;
    for (const p of scene) {
      const d = (p.x - wx) ** 2 + (p.y - wy) ** 2;
      if (d <= bd) { bd = d; best = p; }
    }
    return best;
  };
  const zoom = (f, cx, cy) => {
    const r = canvas.getBoundingClientRect();
    const [wx, wy] = toWorld(cx ?? r.left + r.width / 2, cy ?? r.top + r.height / 2);
    const k = Math.min(Math.max(view.k * f, 0.02), 4);
    view = { k, x: wx - (wx - view.x) * view.k / k, y: wy - (wy - view.y) * view.k / k };
    redraw();
  };

  canvas.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    zoom(ev.deltaY > 0 ? 1 / 1.2 : 1.2, ev.clientX, ev.clientY);
  }, { passive: false });
  let drag = null;
  canvas.addEventListener('pointerdown', (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, view, moved: false };
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener('pointermove', (ev) => {
    if (drag) {
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 5) return;
      drag.moved = true;
      view = { ...drag.view, x: drag.view.x - dx / view.k, y: drag.view.y - dy / view.k };
      tip.hidden = true;
      redraw();
      return;
    }
    const p = hit(ev.clientX, ev.clientY);
    canvas.classList.toggle('over-node', !!p);
    tip.hidden = !p;
    if (p) {
      tip.textContent = `${p.ref} — ${p.health}, depth ${p.depth}`;
      const r = host.getBoundingClientRect();
      tip.style.left = `${ev.clientX - r.left + 12}px`;
      tip.style.top = `${ev.clientY - r.top + 12}px`;
    }
  });
  canvas.addEventListener('pointerleave', () => { tip.hidden = true; });
  canvas.addEventListener('pointerup', (ev) => {
    const d = drag;
    drag = null;
    if (d && !d.moved) {
      const p = hit(ev.clientX, ev.clientY);
      if (p) location.hash = nodeHref(p.ref);
    }
  });
  canvas.addEventListener('pointercancel', () => { drag = null; });
  canvas.addEventListener('keydown', (ev) => {
    const step = { ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, -0.1], ArrowDown: [0, 0.1] }[ev.key];
    if (step) canvas.pan(step[0], step[1]);
    else if (ev.key === '+' || ev.key === '=') zoom(1.4);
    else if (ev.key === '-') zoom(1 / 1.4);
    else if (ev.key === '0') canvas.fit();
    else return;
    ev.preventDefault();
  });
  new ResizeObserver(redraw).observe(canvas);

  canvas.zoomBy = (f) => zoom(f);
  canvas.pan = (fx, fy) => {
    view = { ...view, x: view.x + (canvas.clientWidth / view.k) * fx, y: view.y + (canvas.clientHeight / view.k) * fy };
    redraw();
  };
  canvas.fit = () => { fitView(); redraw(); };
  canvas.scene = scene;
  canvas.pointOf = (ref) => {
    const p = at.get(ref);
    const r = canvas.getBoundingClientRect();
    return p && { x: r.left + (p.x - view.x) * view.k, y: r.top + (p.y - view.y) * view.k };
  };
  fitView();
  paint();
  return canvas;
}
