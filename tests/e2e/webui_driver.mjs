// webui_driver.mjs — drives the web application in Debian's headless Chromium, as a
// person would, and reports what the page showed; tests/e2e/test_webui.py starts it
// against a running cmdbd with the sample estate and checks the report against the API.
//
//   node tests/e2e/webui_driver.mjs   (environment below; prints one JSON report)
//
// Environment: CMDB_UI_URL (server base URL), CMDB_UI_TOKEN (read token typed into the
// page), CMDB_UI_WRITE_TOKEN (for the change the feed must show), CMDB_UI_SHOTS
// (directory for the screenshots), CMDB_UI_NODE_MODULES (the build/node directory that
// holds playwright-core), CMDB_UI_BIG (the root of the generated 2,000-node blast radius).
//
// Each step records its result under its name, or {"error": ...}: one failing step
// does not hide what the others saw. The browser runs with --no-sandbox (the tests run
// as root, where Chromium's sandbox cannot start).

import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env('CMDB_UI_URL');
const TOKEN = env('CMDB_UI_TOKEN');
const WRITE = env('CMDB_UI_WRITE_TOKEN');
const SHOTS = env('CMDB_UI_SHOTS');
const BIG = env('CMDB_UI_BIG');
const BLAST = env('CMDB_UI_BLAST');
const require = createRequire(path.join(env('CMDB_UI_NODE_MODULES'), 'package.json'));
const { chromium } = require('playwright-core');

const report = { steps: {}, console: [], page_errors: [], csp_violations: [] };
fs.mkdirSync(SHOTS, { recursive: true });

async function step(name, fn) {
  const t0 = Date.now();
  try {
    report.steps[name] = { ...(await fn()), ms: Date.now() - t0 };
  } catch (err) {
    report.steps[name] = { error: String(err && err.stack || err), ms: Date.now() - t0 };
  }
}

const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, name + '.png') });
const texts = (page, sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent.trim()));
const hash = (page) => page.evaluate(() => decodeURIComponent(location.hash));

/* Minimum WCAG contrast ratio over the visible text in main and the header. */
async function contrast(page) {
  return page.evaluate(() => {
    const lum = (c) => {
      const m = c.match(/[\d.]+/g).map(Number);
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return { l: 0.2126 * f(m[0]) + 0.7152 * f(m[1]) + 0.0722 * f(m[2]), a: m.length > 3 ? m[3] : 1 };
    };
    const bg = (el) => {
      for (; el; el = el.parentElement) {
        const c = getComputedStyle(el).backgroundColor;
        if (lum(c).a > 0) return c;
      }
      return 'rgb(255, 255, 255)';
    };
    let worst = { ratio: 99 };
    for (const el of document.querySelectorAll('header *, main *')) {
      if (!el.childNodes.length || ![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
      if (el.closest('svg') || !el.getClientRects().length) continue;
      const a = lum(getComputedStyle(el).color).l;
      const b = lum(bg(el)).l;
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      if (ratio < worst.ratio) worst = { ratio: Math.round(ratio * 100) / 100, text: el.textContent.trim().slice(0, 40) };
    }
    return worst;
  });
}

/* Form controls without an accessible name. */
const unlabelled = (page) => page.$$eval('input, select, button', (els) => els
  .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
  .map((e) => e.outerHTML.slice(0, 80)));

const overflow = (page) => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

const browser = await chromium.launch({
  executablePath: process.env.CMDB_UI_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  headless: true,
});
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 800 } });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') report.console.push(m.text()); });
  page.on('pageerror', (e) => report.page_errors.push(String(e)));
  await page.exposeFunction('__cspViolation', (v) => report.csp_violations.push(v));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => window.__cspViolation(`${e.violatedDirective} ${e.blockedURI}`));
  });

  await step('token', async () => {
    // A pasted link opens on the token prompt; a wrong token is refused in place; the
    // right one opens the view the link named.
    await page.goto(`${BASE}/ui/#/node/service/checkout`);
    await page.waitForSelector('#tok');
    const prompt = await page.textContent('main h1');
    await page.fill('#tok', 'not-a-token');
    await page.press('#tok', 'Enter');
    await page.waitForSelector('main .error');
    const refused = await page.textContent('main .error');
    await page.fill('#tok', TOKEN);
    await page.press('#tok', 'Enter');
    await page.waitForSelector('main h1 .kind');
    const stored = await page.evaluate(() => sessionStorage.getItem('cmdb.token'));
    const local = await page.evaluate(() => localStorage.length);
    return { prompt, refused, after: await page.textContent('main h1'), stored: stored === TOKEN, local };
  });

  await step('search', async () => {
    await page.goto(`${BASE}/ui/#/`);
    await page.waitForSelector('main h1');
    await page.keyboard.press('/');
    const focused = await page.evaluate(() => document.activeElement.id);
    await page.keyboard.type('service/chec');
    await page.waitForFunction(() => {
      const o = [...document.querySelectorAll('#q-list li[data-ref]')];
      return o.length && o.every((li) => li.dataset.ref.startsWith('service/chec'));
    });
    const options = await page.$$eval('#q-list li[data-ref]', (els) => els.map((e) => e.dataset.ref));
    const expanded = await page.getAttribute('#q', 'aria-expanded');
    await page.keyboard.press('ArrowDown');
    const active = await page.getAttribute('#q', 'aria-activedescendant');
    const selected = await page.getAttribute(`#${active}`, 'data-ref');
    await shot(page, 'search');
    await page.keyboard.press('Enter');
    await page.waitForSelector('main h1 .kind');
    return { focused, options, expanded, selected, hash: await hash(page), h1: await page.textContent('main h1') };
  });

  await step('node', async () => {
    await page.waitForSelector('#s-owners + div table, #s-owners + p');
    await page.waitForFunction(() => !document.querySelector('#s-recent-changes')?.parentElement.textContent.includes('Loading'));
    const owners = await page.$$eval('section[aria-labelledby=s-owners] tbody tr', (rows) => rows.map((r) => {
      const td = [...r.children];
      return { ref: td[0].textContent.trim(), contacts: td[1].textContent.trim(), rule: td[2].textContent.trim(), chain: td[3].textContent.trim() };
    }));
    const rows = async (id) => page.$$eval(`section[aria-labelledby=${id}] tbody tr`, (r) => r.length);
    const result = {
      owners,
      health: await page.textContent('main .status .badge'),
      edges_out: await rows('s-edges-out'),
      edges_in: await rows('s-edges-in'),
      deployments: await rows('s-recent-deployments'),
      changes: await rows('s-recent-changes'),
      attributes: await texts(page, 'section[aria-labelledby=s-attributes] dt'),
      labels: await texts(page, 'section[aria-labelledby=s-labels] dt'),
      contrast: await contrast(page),
      unlabelled: await unlabelled(page),
    };
    await shot(page, 'node');
    return result;
  });

  // What the canvas drew: its scene (root first) and how many nodes the last frame painted.
  const drawn = (page) => page.$eval('canvas.graph', (c) => ({
    nodes: c.scene.length - 1, root: c.scene[0].ref, painted: Number(c.dataset.painted),
    health: Object.fromEntries(c.scene.map((p) => [p.ref, p.health])),
  }));
  const ready = (page) => page.waitForSelector('canvas.graph[data-ready]');
  const clickNode = async (page, ref) => {
    const pt = await page.$eval('canvas.graph', (c, r) => c.pointOf(r), ref);
    await page.mouse.click(pt.x, pt.y);
  };

  await step('blast', async () => {
    await page.goto(`${BASE}/ui/#/node/${encodeURIComponent(BLAST).replace(/%2F/g, '/')}`);
    await page.waitForSelector('main h1 .kind');
    await page.click('main a.button:has-text("Blast radius")');
    await ready(page);
    const d = await drawn(page);
    const listed = await page.$$eval('section[aria-labelledby=s-nodes] tbody tr', (r) => r.length);
    const result = { hash: await hash(page), drawn: d.nodes, painted: d.painted, root: d.root, health: d.health, listed,
      summary: await page.textContent('.summary'), unlabelled: await unlabelled(page), contrast: await contrast(page) };
    await shot(page, 'blast-radius');
    // Depth 1 through the filter: the URL says so and fewer nodes are drawn.
    await page.selectOption('#depth', '1');
    await page.waitForFunction(() => location.hash.includes('depth=1') && document.querySelector('canvas.graph[data-ready]'));
    result.depth1 = { hash: await hash(page), drawn: (await drawn(page)).nodes };
    // Only runs_on edges, one box unticked at a time.
    for (const t of ['depends_on', 'connects_to', 'part_of']) {
      await page.uncheck(`#t-${t}`);
      await page.waitForFunction((x) => location.hash.includes('types=') && !location.hash.includes(x) &&
        document.querySelector('canvas.graph[data-ready], main p.empty'), t);
    }
    result.runs_on = { hash: await hash(page), drawn: (await drawn(page)).nodes };
    return result;
  });

  await step('click_node', async () => {
    await page.goto(`${BASE}/ui/#/impact/service/checkout`);
    await ready(page);
    const target = await page.$eval('canvas.graph', (c) => c.scene[1].ref);
    await clickNode(page, target);
    await page.waitForFunction((t) => decodeURIComponent(location.hash) === '#/node/' + t, target);
    await page.waitForSelector('main h1 .kind');
    return { target, hash: await hash(page), h1: await page.textContent('main h1') };
  });

  await step('needs', async () => {
    await page.goto(`${BASE}/ui/#/needs/service/checkout`);
    await ready(page);
    const d = await drawn(page);
    await shot(page, 'needs');
    return { drawn: d.nodes, painted: d.painted, summary: await page.textContent('.summary') };
  });

  await step('rootcause', async () => {
    await page.click('nav a:has-text("Root cause")');
    await page.waitForSelector('#rc-causes, #rc-none');
    const result = {
      hash: await hash(page),
      root_causes: await page.$$eval('#rc-causes li a', (e) => e.map((x) => x.textContent)),
      cover: await page.$$eval('#rc-cover li a', (e) => e.map((x) => x.textContent)),
      failing: await page.$$eval('section[aria-labelledby=s-failing] tbody tr td:first-child', (e) => e.map((x) => x.textContent)),
      contrast: await contrast(page),
    };
    await shot(page, 'root-cause');
    return result;
  });

  await step('feed', async () => {
    const polls = [];
    const onRequest = (req) => { if (req.url().includes('/v1/changes')) polls.push(req.url().replace(BASE, '')); };
    page.on('request', onRequest);
    await page.click('nav a:has-text("Changes")');
    await page.waitForSelector('.summary[data-since]');
    const before = await page.$$eval('#feed tr', (r) => r.length);
    await page.waitForTimeout(300); // the page is now parked in its long poll
    const name = 'webui-probe-' + Date.now();
    const ref = 'service/' + name;
    const t0 = Date.now();
    const res = await fetch(`${BASE}/v1/nodes/service/${name}`, {
      method: 'PUT', headers: { Authorization: 'Bearer ' + WRITE, 'Content-Type': 'application/json' },
      body: JSON.stringify({ labels: { from: 'webui-test' } }),
    });
    await page.waitForFunction((r) => [...document.querySelectorAll('#feed tr')].some((tr) => tr.textContent.includes(r)),
      ref, { timeout: 15000 });
    const ms = Date.now() - t0;
    const row = await page.textContent('#feed tr:first-child');
    page.off('request', onRequest);
    await shot(page, 'changes');
    return { status: res.status, ref, ms, row, before, polls };
  });

  await step('big', async () => {
    await page.goto(`${BASE}/ui/#/`);
    await page.waitForSelector('main h1');
    // Timed in the page, from the change of URL to the frame with the drawing (the
    // wall clock here adds the DevTools protocol's round trips; reported too). Twice,
    // from the start page each time: the machine is shared, the better run is the
    // page's speed, and both are reported.
    const runs = [];
    for (let i = 0; i < 2; i++) {
      if (i) {
        await page.evaluate(() => { location.hash = '#/'; });
        await page.waitForSelector('main h1:has-text("Service map")');
      }
      const t0 = Date.now();
      const start = await page.evaluate((r) => { const t = performance.now(); location.hash = '#/impact/' + r; return t; }, BIG);
      await page.waitForSelector('canvas.graph[data-ready]', { timeout: 20000 });
      runs.push({ wall: Date.now() - t0, pageMs: Number(await page.getAttribute('canvas.graph', 'data-ready-at')) - start });
    }
    const pageMs = Math.min(...runs.map((r) => r.pageMs));
    const wall = Math.min(...runs.map((r) => r.wall));
    const d = await drawn(page);
    const appMs = Number(await page.getAttribute('canvas.graph', 'data-render-ms'));
    const fetchMs = Number(await page.getAttribute('canvas.graph', 'data-fetch-ms'));
    const drawMs = Number(await page.getAttribute('canvas.graph', 'data-draw-ms'));
    const summary = await page.textContent('.summary');
    // Still usable: a zoom is painted in the next frame, a click opens the node.
    const zoom = await page.evaluate(() => new Promise((resolve) => {
      const c = document.querySelector('canvas.graph');
      const before = c.pointOf(c.scene[0].ref);
      const r = c.getBoundingClientRect();
      const t = performance.now();
      c.dispatchEvent(new WheelEvent('wheel', { deltaY: -100, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, bubbles: true, cancelable: true }));
      requestAnimationFrame(() => {
        const after = c.pointOf(c.scene[0].ref);
        resolve({ ms: performance.now() - t, moved: before.x !== after.x || before.y !== after.y });
      });
    }));
    await page.click('.graph-tools button[aria-label="Fit"]');
    await page.waitForTimeout(100);
    await shot(page, 'blast-radius-2000');
    const target = await page.$eval('canvas.graph', (c) => c.scene[c.scene.length - 1].ref);
    const t1 = Date.now();
    await clickNode(page, target);
    await page.waitForSelector('main h1 .kind');
    const clickMs = Date.now() - t1;
    return { runs, pageMs, wall, appMs, fetchMs, drawMs, drawn: d.nodes, painted: d.painted, summary, zoomMs: zoom.ms, zoomMoved: zoom.moved, clickMs, target, hash: await hash(page) };
  });

  await step('widths', async () => {
    const out = {};
    for (const [name, vp] of [['laptop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
      await page.setViewportSize(vp);
      out[name] = {};
      for (const [view, url, sel] of [['node', '#/node/service/checkout', 'main h1 .kind'],
        ['blast', '#/impact/service/checkout', 'canvas.graph[data-ready]'], ['rootcause', '#/rootcause', '#rc-causes, #rc-none']]) {
        await page.goto(`${BASE}/ui/${url}`);
        await page.waitForSelector(sel);
        out[name][view] = { overflow: await overflow(page) };
      }
      await page.goto(`${BASE}/ui/#/node/service/checkout`);
      await page.waitForSelector('main h1 .kind');
      if (name === 'phone') await shot(page, 'node-phone');
    }
    return out;
  });
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report) + '\n');
