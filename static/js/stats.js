// Live charts and sparklines, filled into the templates' placeholders:
//
//   <div class="kv-chart" data-stats-object="vm:<uuid>|host:<id>" data-stats-metric="cpu|memory|disk|net"
//        data-stats-range="1h|1d|30d"></div>          (the range may change: the chart follows it)
//   <span class="kv-spark" data-stats-object="vm:<uuid>" data-stats-metric="cpu"></span>
//
// Each object's history comes once per range from GET /api/v1/stats/<kind>/<key>/?range=... when
// its placeholder first shows on screen. Live points come over the page's one WebSocket, and only
// for the objects on screen: the page names them ({"action": "watch", "objects": [...]}), renews
// that list every 30 s (a subscription's keep-alive, not a poll: no data is asked for) and names
// them again after a reconnect. Nothing here polls.
import { $$, h } from "./dom.js";
import { onEvents, sendEvent } from "./realtime.js";

const API = "/api/v1/stats/";
const RANGES = {
  "1h": { step: 10, span: 3600, words: "the last hour" },
  "1d": { step: 60, span: 86400, words: "the last day" },
  "30d": { step: 600, span: 30 * 86400, words: "the last 30 days" },
};
const SPARK_SPAN = 1800; // a sparkline shows the last half hour
const RENEW_MS = 30000; // the server forgets a watch not renewed within 60 s
const MAX_WATCHED = 200; // the server's limit per socket
const MAX_FETCHES = 4; // history requests in flight at once (a VM list has many sparklines)
const CHART_HEIGHT = 180;
const SELECTOR = "[data-stats-object]";

// A point as the API sends it: [ts, cpu_pct, mem_used_kib, mem_total_kib, disk_rd_bps, disk_wr_bps, net_rx_bps, net_tx_bps]
const FIELD = { cpu_pct: 1, mem_used_kib: 2, mem_total_kib: 3, disk_rd_bps: 4, disk_wr_bps: 5, net_rx_bps: 6, net_tx_bps: 7 };

// ------------------------------------------------------------------ units

function percent(v) {
  return v === null || v === undefined ? "–" : `${v < 10 && v > 0 ? v.toFixed(1) : Math.round(v)}\u00a0%`;
}

/** 1024-based, in the same words as the rest of the pages (Django's filesizeformat). */
function bytes(v) {
  if (v === null || v === undefined) return "–";
  const units = ["bytes", "KB", "MB", "GB", "TB", "PB"];
  let n = Math.abs(v);
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || n >= 100 ? 0 : 1;
  return `${n.toFixed(digits).replace(/\.0$/, "")}\u00a0${units[unit]}`;
}

function rate(v) {
  return v === null || v === undefined ? "–" : `${bytes(v)}/s`;
}

/** Axis labels: "0" rather than "0 bytes", so the eye finds the baseline. */
const tickOf = (unit) => (u, splits) => splits.map((v) => (v === 0 ? "0" : unit(v)));

// Byte axes step in binary amounts (64 MB, 128 MB, 192 MB; 256 KB/s, 512 KB/s, 1 MB/s), the way
// memory is sized, so no label reads 47.7 MB or 1000 KB.
const BYTE_STEPS = [];
const BYTE_TOPS = [];
for (let power = 0; power <= 5; power += 1) {
  for (let m = 1; m < 1024; m *= 2) {
    BYTE_STEPS.push(m * 1024 ** power);
    BYTE_TOPS.push(m * 1024 ** power, m * 1.5 * 1024 ** power);
  }
}

/** A round top for a byte axis, a little above `max` and at least `floor`. */
function niceMax(max, floor = 1) {
  const wanted = Math.max((max || 0) * 1.05, floor);
  return BYTE_TOPS.find((top) => top >= wanted) ?? wanted;
}

// Axis labels are measured, so "768 KB/s" is never cut off on the left.
const measure = document.createElement("canvas").getContext("2d");
function axisWidth(u, values) {
  if (!values) return 48;
  measure.font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  return Math.ceil(Math.max(24, ...values.map((v) => measure.measureText(v).width))) + 18;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const momentFmt = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit", second: "2-digit" });
const dayMomentFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
function tick(seconds, increment) {
  const date = new Date(seconds * 1000);
  return increment >= 86400 ? dayFmt.format(date) : timeFmt.format(date);
}

const METRICS = {
  cpu: {
    unit: percent,
    range: () => [0, 100],
    series: [{ column: FIELD.cpu_pct, label: "CPU", color: "--kv-blue", fill: true }],
  },
  memory: {
    unit: bytes,
    steps: BYTE_STEPS,
    factor: 1024, // KiB
    range: (u, min, max) => [0, niceMax(max, 1024 * 1024)],
    series: [
      { column: FIELD.mem_used_kib, label: "Used", color: "--kv-blue", fill: true },
      { column: FIELD.mem_total_kib, label: "Total", color: "--tblr-secondary", dash: [4, 4] },
    ],
  },
  disk: {
    unit: rate,
    steps: BYTE_STEPS,
    range: (u, min, max) => [0, niceMax(max, 1024)],
    series: [
      { column: FIELD.disk_rd_bps, label: "Read", hostLabel: "Guests read", color: "--kv-blue", fill: true },
      { column: FIELD.disk_wr_bps, label: "Write", hostLabel: "Guests write", color: "--tblr-purple" },
    ],
  },
  net: {
    unit: rate,
    steps: BYTE_STEPS,
    range: (u, min, max) => [0, niceMax(max, 1024)],
    series: [
      { column: FIELD.net_rx_bps, label: "Received", hostLabel: "Guests received", color: "--kv-blue", fill: true },
      { column: FIELD.net_tx_bps, label: "Sent", hostLabel: "Guests sent", color: "--tblr-purple" },
    ],
  },
};

// ------------------------------------------------------------------ colours (light and dark themes)

let palette = null;

/** A CSS colour (variables, light-dark(), oklch...) as rgba() that a canvas draws the same everywhere. */
function resolveColor(value, alpha = 1) {
  const probe = h("span", { style: `display:none;color:${value}` });
  document.body.append(probe);
  const css = getComputedStyle(probe).color;
  probe.remove();
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = css;
  ctx.fillRect(0, 0, 1, 1);
  const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
  return `rgba(${r}, ${g}, ${b}, ${((a / 255) * alpha).toFixed(3)})`;
}

function colors() {
  if (!palette) {
    const text = resolveColor("var(--tblr-secondary)");
    palette = { text, grid: resolveColor("var(--tblr-border-color)"), line: {}, fill: {} };
  }
  return palette;
}

function lineColor(name) {
  const p = colors();
  p.line[name] ??= resolveColor(`var(${name})`);
  p.fill[name] ??= resolveColor(`var(${name})`, 0.14);
  return { line: p.line[name], fill: p.fill[name] };
}

// ------------------------------------------------------------------ series: one per object and range

const allSeries = new Map(); // "vm:<uuid>|1h" -> Series

class Series {
  constructor(object, range) {
    this.object = object;
    this.range = range;
    this.step = RANGES[range].step;
    this.span = RANGES[range].span;
    this.points = [];
    this.openCount = 0; // live samples averaged into the newest point
    this.state = "new"; // new | loading | ready | unavailable
    this.stale = false; // live points may have been missed (off screen, socket down)
    this.hiddenAt = 0;
    this.early = []; // live points that came while the history was loading
    this.views = new Set();
  }

  static for(object, range) {
    const key = `${object}|${range}`;
    if (!allSeries.has(key)) allSeries.set(key, new Series(object, range));
    return allSeries.get(key);
  }

  load() {
    if (this.state === "loading" || this.state === "unavailable") return;
    if (this.state === "ready" && !this.stale) return;
    this.state = "loading";
    this.stale = false;
    const [kind, key] = splitObject(this.object);
    const url = `${API}${encodeURIComponent(kind)}/${encodeURIComponent(key)}/?range=${encodeURIComponent(this.range)}`;
    limited(() => fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }))
      .then(async (response) => {
        if (response.status === 404 || response.status === 403) {
          this.state = "unavailable";
          return;
        }
        if (!response.ok) throw new Error(`${response.status}`);
        const body = await response.json();
        this.points = Array.isArray(body.points) ? body.points : [];
        this.openCount = 1;
        this.state = "ready";
        for (const point of this.early) this.add(point);
        this.early = [];
        this.trim();
      })
      .catch(() => {
        this.state = "new"; // a later activation or reconnect tries again
        this.stale = true;
      })
      .finally(() => this.redraw());
  }

  /** Fold a live point in: it starts a new point, or averages into the newest one (1d and 30d). */
  add(point) {
    if (this.state !== "ready") {
      if (this.state === "loading") this.early.push(point);
      return;
    }
    const bucket = point[0] - (point[0] % this.step);
    const last = this.points[this.points.length - 1];
    if (last && last[0] === bucket) {
      const n = this.openCount || 1;
      for (let i = 1; i < point.length; i += 1) {
        if (point[i] === null || point[i] === undefined) continue;
        last[i] = last[i] === null || last[i] === undefined ? point[i] : (last[i] * n + point[i]) / (n + 1);
      }
      this.openCount = n + 1;
    } else if (!last || bucket > last[0]) {
      this.points.push([bucket, ...point.slice(1)]);
      this.openCount = 1;
    }
    this.trim();
  }

  trim() {
    const oldest = Date.now() / 1000 - this.span - this.step;
    let drop = 0;
    while (drop < this.points.length && this.points[drop][0] < oldest) drop += 1;
    if (drop) this.points.splice(0, drop);
  }

  get active() {
    for (const view of this.views) if (view.active) return true;
    return false;
  }

  /** A view of this series came on screen: load it, or re-read it if it was away long enough to miss a point. */
  shown() {
    if (this.hiddenAt && Date.now() - this.hiddenAt < this.step * 1000 && this.state === "ready") this.stale = false;
    this.hiddenAt = 0;
    this.load();
  }

  /** A view left the screen; once none is left, the server stops sending this object's points. */
  hidden() {
    if (this.active) return;
    this.stale = true;
    this.hiddenAt = Date.now();
  }

  redraw() {
    for (const view of this.views) view.draw();
  }
}

function splitObject(object) {
  const at = object.indexOf(":");
  return [object.slice(0, at), object.slice(at + 1)];
}

let inFlight = 0;
const waiting = [];
function limited(task) {
  return new Promise((resolve, reject) => {
    waiting.push({ task, resolve, reject });
    pump();
  });
}
function pump() {
  while (inFlight < MAX_FETCHES && waiting.length) {
    const { task, resolve, reject } = waiting.shift();
    inFlight += 1;
    task()
      .then(resolve, reject)
      .finally(() => {
        inFlight -= 1;
        pump();
      });
  }
}

// ------------------------------------------------------------------ views: charts and sparklines

const views = new Map(); // element -> view

class ChartView {
  constructor(el) {
    this.el = el;
    this.object = el.dataset.statsObject;
    this.metric = METRICS[el.dataset.statsMetric] ? el.dataset.statsMetric : "cpu";
    this.active = false;
    this.plot = null;
    this.width = 0;
    this.setRange(el.dataset.statsRange);
  }

  setRange(range) {
    const wanted = RANGES[range] ? range : "1h";
    if (this.series && this.series.range === wanted) return;
    if (this.series) {
      this.series.views.delete(this);
      this.series.hidden();
    }
    this.series = Series.for(this.object, wanted);
    this.series.views.add(this);
    this.destroyPlot();
    if (this.active) this.series.shown();
    this.draw();
  }

  activate(on) {
    this.active = on;
    if (on) this.series.shown();
    else this.series.hidden();
    this.draw();
  }

  data() {
    const def = METRICS[this.metric];
    const factor = def.factor || 1;
    const xs = [];
    const ys = def.series.map(() => []);
    let previous = null;
    for (const point of this.series.points) {
      // More than two missing samples: break the line rather than draw across the gap.
      if (previous !== null && point[0] - previous > this.series.step * 3) {
        xs.push(previous + this.series.step);
        for (const y of ys) y.push(null);
      }
      xs.push(point[0]);
      def.series.forEach((s, i) => {
        const v = point[s.column];
        ys[i].push(v === null || v === undefined ? null : v * factor);
      });
      previous = point[0];
    }
    return [xs, ...ys];
  }

  draw() {
    const { series, el } = this;
    if (series.state === "unavailable") {
      this.destroyPlot();
      el.replaceChildren(h("div", { class: "text-secondary small text-center py-5" }, "No statistics for this object."));
      return;
    }
    if (!this.active || series.state !== "ready") return;
    if (!series.points.length) {
      this.destroyPlot();
      el.replaceChildren(); // the stylesheet shows "Waiting for data…"
      return;
    }
    const data = this.data();
    if (!this.plot) this.createPlot(data);
    else this.plot.setData(data);
    this.describe(data);
  }

  createPlot(data) {
    if (!window.uPlot || !this.el.clientWidth) return;
    const def = METRICS[this.metric];
    const c = colors();
    const isHost = this.object.startsWith("host:");
    const { span } = RANGES[this.series.range];
    const axis = { stroke: c.text, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 } };
    this.el.replaceChildren();
    this.width = this.el.clientWidth;
    this.plot = new window.uPlot(
      {
        width: this.width,
        height: CHART_HEIGHT,
        padding: [10, 24, 0, 0],
        cursor: { drag: { x: false, y: false }, points: { size: 6 } },
        legend: { live: true },
        scales: {
          x: { time: true, range: () => [Date.now() / 1000 - span, Date.now() / 1000] },
          y: { range: def.range },
        },
        axes: [
          { ...axis, space: 64, values: (u, splits, i, space, increment) => splits.map((s) => tick(s, increment)) },
          { ...axis, size: axisWidth, ...(def.steps ? { incrs: def.steps } : {}), values: tickOf(def.unit) },
        ],
        series: [
          {
            label: "At",
            value: (u, v) => (v === null ? "–" : (span > 86400 ? dayMomentFmt : momentFmt).format(new Date(v * 1000))),
          },
          ...def.series.map((s) => {
            const color = lineColor(s.color);
            return {
              label: isHost && s.hostLabel ? s.hostLabel : s.label,
              stroke: color.line,
              fill: s.fill ? color.fill : undefined,
              dash: s.dash,
              width: 1.5,
              points: { show: false },
              value: (u, v) => def.unit(v),
            };
          }),
        ],
        hooks: { ready: [(u) => u.root.addEventListener("mouseleave", () => showLatest(u))] },
      },
      data,
      this.el,
    );
    this.el.append(h("p", { class: "visually-hidden", "data-stats-summary": true }));
    // uPlot resets its legend on its first draw: show the latest values once that is done.
    const plot = this.plot;
    window.requestAnimationFrame(() => showLatest(plot));
  }

  /** The latest values in words, for screen readers (the legend shows them too). */
  describe(data) {
    const summary = this.el.querySelector("[data-stats-summary]");
    if (!summary) return;
    const def = METRICS[this.metric];
    const last = data[0].length - 1;
    const parts = def.series.map((s, i) => `${s.label} ${def.unit(data[i + 1][last])}`);
    summary.textContent = `Latest: ${parts.join(", ")}; chart of ${RANGES[this.series.range].words}.`;
    if (this.plot && this.plot.cursor.left < 0) showLatest(this.plot);
  }

  resize() {
    if (!this.plot) {
      this.draw();
      return;
    }
    const width = this.el.clientWidth;
    if (width && width !== this.width) {
      this.width = width;
      this.plot.setSize({ width, height: CHART_HEIGHT });
    }
  }

  destroyPlot() {
    if (this.plot) {
      this.plot.destroy();
      this.plot = null;
    }
  }

  rebuild() {
    this.destroyPlot();
    this.draw();
  }

  dispose() {
    this.destroyPlot();
    this.series.views.delete(this);
    this.series.hidden();
  }
}

function showLatest(plot) {
  const last = plot.data[0].length - 1;
  if (last >= 0) plot.setLegend({ idx: last });
}

class SparkView {
  constructor(el) {
    this.el = el;
    this.object = el.dataset.statsObject;
    this.active = false;
    this.series = Series.for(this.object, "1h");
    this.series.views.add(this);
  }

  activate(on) {
    this.active = on;
    if (on) this.series.shown();
    else this.series.hidden();
    this.draw();
  }

  draw() {
    if (!this.active || this.series.state !== "ready") return;
    const now = Date.now() / 1000;
    const since = now - SPARK_SPAN;
    const points = this.series.points.filter((p) => p[0] >= since && p[FIELD.cpu_pct] !== null);
    if (!points.length) {
      this.el.replaceChildren();
      this.el.removeAttribute("title");
      return;
    }
    // One path; a gap of more than two samples lifts the pen.
    let d = "";
    let previous = null;
    for (const p of points) {
      const x = (((p[0] - since) / SPARK_SPAN) * 100).toFixed(2);
      const y = (23 - (Math.min(100, Math.max(0, p[FIELD.cpu_pct])) / 100) * 22).toFixed(2);
      d += `${previous === null || p[0] - previous > this.series.step * 3 ? "M" : "L"}${x} ${y}`;
      previous = p[0];
    }
    const latest = percent(points[points.length - 1][FIELD.cpu_pct]);
    const svgNs = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNs, "svg");
    svg.setAttribute("viewBox", "0 0 100 24");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("width", "100%");
    svg.setAttribute("height", "100%");
    const path = document.createElementNS(svgNs, "path");
    path.setAttribute("d", d);
    path.setAttribute("fill", "none");
    path.setAttribute("vector-effect", "non-scaling-stroke");
    path.setAttribute("style", "stroke: var(--kv-blue); stroke-width: 1.5; stroke-linejoin: round");
    svg.append(path);
    this.el.replaceChildren(svg, h("span", { class: "visually-hidden" }, `CPU ${latest}`));
    this.el.title = `CPU ${latest} (the last ${SPARK_SPAN / 60} minutes)`;
  }

  resize() {}
  rebuild() {
    this.draw();
  }

  dispose() {
    this.series.views.delete(this);
    this.series.hidden();
  }
}

// ------------------------------------------------------------------ which objects the server sends

let watched = new Set(); // what the server was last told
let syncTimer = null;

function onScreen() {
  const objects = new Set();
  for (const view of views.values()) {
    if (view.active && objects.size < MAX_WATCHED) objects.add(view.object);
  }
  return objects;
}

function syncWatches({ renew = false } = {}) {
  window.clearTimeout(syncTimer);
  syncTimer = null;
  const want = onScreen();
  const add = [...want].filter((o) => !watched.has(o));
  const drop = [...watched].filter((o) => !want.has(o));
  let ok = true;
  if (renew ? want.size : add.length) ok = sendEvent({ action: "watch", objects: renew ? [...want] : add });
  if (ok && drop.length) ok = sendEvent({ action: "unwatch", objects: drop });
  // Not connected: the next connection names everything again.
  watched = ok ? want : new Set();
}

function scheduleSync() {
  if (!syncTimer) syncTimer = window.setTimeout(syncWatches, 150);
}

function applyLive(message) {
  if (typeof message.object !== "string" || typeof message.ts !== "number") return;
  const point = [
    message.ts,
    message.cpu_pct ?? null,
    message.mem_used_kib ?? null,
    message.mem_total_kib ?? null,
    message.disk_rd_bps ?? null,
    message.disk_wr_bps ?? null,
    message.net_rx_bps ?? null,
    message.net_tx_bps ?? null,
  ];
  for (const range of Object.keys(RANGES)) {
    const series = allSeries.get(`${message.object}|${range}`);
    if (!series) continue;
    series.add(point);
    series.redraw();
  }
}

function markRefused(objects) {
  for (const object of objects || []) {
    for (const series of allSeries.values()) {
      if (series.object === object) {
        series.state = "unavailable";
        series.redraw();
      }
    }
  }
}

// ------------------------------------------------------------------ finding placeholders

const visibility = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) views.get(entry.target)?.activate(entry.isIntersecting);
    scheduleSync();
  },
  { rootMargin: "200px" },
);

const sizes = new ResizeObserver((entries) => {
  for (const entry of entries) views.get(entry.target)?.resize();
});

function bind(el) {
  if (views.has(el) || !el.dataset.statsObject || !el.dataset.statsObject.includes(":")) return;
  const view = el.classList.contains("kv-spark") ? new SparkView(el) : new ChartView(el);
  views.set(el, view);
  visibility.observe(el);
  if (view instanceof ChartView) sizes.observe(el);
}

function unbind(el) {
  const view = views.get(el);
  if (!view) return;
  visibility.unobserve(el);
  sizes.unobserve(el);
  view.dispose();
  views.delete(el);
}

function scan(root) {
  if (root.nodeType !== Node.ELEMENT_NODE) return;
  if (root.matches(SELECTOR)) bind(root);
  for (const el of $$(SELECTOR, root)) bind(el);
}

function forget(root) {
  if (root.nodeType !== Node.ELEMENT_NODE) return;
  if (views.has(root)) unbind(root);
  for (const el of $$(SELECTOR, root)) if (!el.isConnected) unbind(el);
}

new MutationObserver((mutations) => {
  let changed = false;
  for (const m of mutations) {
    if (m.type === "attributes") {
      if (m.attributeName === "data-stats-range") views.get(m.target)?.setRange?.(m.target.dataset.statsRange);
      else if (m.target === document.documentElement) rethemed();
      continue;
    }
    for (const node of m.removedNodes) {
      if (node.nodeType === Node.ELEMENT_NODE && !node.isConnected) {
        forget(node);
        changed = true;
      }
    }
    for (const node of m.addedNodes) scan(node);
  }
  if (changed) scheduleSync();
}).observe(document.documentElement, {
  subtree: true,
  childList: true,
  attributes: true,
  attributeFilter: ["data-stats-range", "data-bs-theme"],
});

function rethemed() {
  palette = null;
  for (const view of views.values()) view.rebuild();
}
window.matchMedia?.("(prefers-color-scheme: dark)").addEventListener?.("change", rethemed);

// ------------------------------------------------------------------ the socket

onEvents({
  onMessage(message) {
    if (message.type === "stats") applyLive(message);
    else if (message.type === "stats.watch" && message.refused?.length) markRefused(message.refused);
  },
  onOpen({ reconnected }) {
    if (reconnected) {
      // Points were missed while away: read the history of what is on screen again.
      for (const series of allSeries.values()) {
        series.stale = true;
        if (series.active) series.load();
      }
    }
    watched = new Set();
    syncWatches({ renew: true });
  },
});

window.setInterval(() => {
  if (watched.size && document.visibilityState === "visible") syncWatches({ renew: true });
}, RENEW_MS);

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  // A hidden tab's timers are throttled, so its watches may have lapsed: renew them now, and
  // re-read what may have been missed.
  for (const series of allSeries.values()) {
    if (series.active && series.points.length) {
      const last = series.points[series.points.length - 1][0];
      if (Date.now() / 1000 - last > series.step * 6 + 60) {
        series.stale = true;
        series.load();
      }
    }
  }
  syncWatches({ renew: true });
});

scan(document.body);
