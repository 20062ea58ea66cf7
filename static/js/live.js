// Applies live messages to the page. The conventions the templates follow:
//
//   [data-operation-id="12"]        an operation's element; inside it (or on it):
//       [data-field="status"]         status badge (re-rendered)
//       [data-field="progress"]       .progress bar (width, tone, indeterminate)
//       [data-field="progress-text"]  "40%"
//       [data-field="message"]        latest progress text       [data-field="error"]   the error
//       [data-field="summary"]        error if failed, else message
//       [data-field="started"|"finished"]  <time> elements       [data-field="duration"]
//       [data-show-when="active"|"final"|"failed"|"succeeded"]  shown only in that state
//   [data-host-id="3"]              a host's element; inside it: [data-field="state"] (badge),
//       "last_seen" (<time>), "last_error", "libvirt_version", "hypervisor", "hypervisor_version",
//       "virt_types", "cpus", "memory" (from memory_kib), "name"
//   [data-target-activity="host:3"] shows the active operation on that object (spinner, words, %)
//   [data-live-region="name"] [data-live-watch="host:3 host:* op:* op:12 optarget:host:3"]
//       a part of the page re-fetched (fetch(location.href), one request, debounced) and swapped
//       when a matching event arrives; every region is also re-fetched after a reconnect.
import { $, $$, h, humanSizeKiB, setText, spinner, urlFor, within } from "./dom.js";
import { opSummary, placeOperation, updateCount } from "./drawer.js";
import {
  hostStateBadge,
  isActiveStatus,
  isFinalStatus,
  opStatusBadge,
  progressText,
  updateProgress,
  virtTypes,
} from "./states.js";
import { duration, renderTimes, setTime } from "./time.js";
import { toast } from "./toasts.js";

const seenStatus = new Map();

// Operations already announced in this browser tab: a page load must not announce them again.
const TOASTED_KEY = "kvmweb-announced-operations";
const toasted = new Set(
  (() => {
    try {
      return JSON.parse(window.sessionStorage.getItem(TOASTED_KEY) || "[]");
    } catch {
      return [];
    }
  })(),
);
function remember(id) {
  toasted.add(id);
  try {
    window.sessionStorage.setItem(TOASTED_KEY, JSON.stringify([...toasted].slice(-200)));
  } catch {
    /* storage unavailable: this page still remembers */
  }
}
const ANNOUNCE_WINDOW_MS = 10 * 60 * 1000; // generous: browser and server clocks may differ
let afterSwap = () => {};

/** app.js passes the function that wires up freshly swapped-in content. */
export function onContentReplaced(fn) {
  afterSwap = fn;
}

export function handleMessage(message) {
  switch (message.type) {
    case "operation":
      if (message.operation && message.operation.id !== undefined) applyOperation(message.operation);
      break;
    case "host.state":
      if (message.host && message.host.id !== undefined) applyHost(message.host);
      break;
    case "host.deleted":
      if (message.host && message.host.id !== undefined) hostDeleted(message.host);
      break;
    default:
      break; // unknown types are for other pages or later versions
  }
}

// ------------------------------------------------------------------ operations

function knownStatus(id) {
  if (seenStatus.has(id)) return seenStatus.get(id);
  const el = $(`[data-operation-id="${CSS.escape(String(id))}"]`);
  return el?.dataset.status || el?.querySelector('[data-field="status"]')?.dataset.status || null;
}

export function applyOperation(op) {
  const before = knownStatus(op.id);
  seenStatus.set(op.id, op.status);
  placeOperation(op);
  for (const root of $$(`[data-operation-id="${CSS.escape(String(op.id))}"]`)) updateOperation(root, op);
  updateActivity(op);
  updateCount();

  const fresh = !op.finished || Date.now() - new Date(op.finished).getTime() < ANNOUNCE_WINDOW_MS;
  if (isFinalStatus(op.status) && before !== op.status && !toasted.has(op.id) && fresh) {
    remember(op.id);
    toastFinished(op);
  }
  if (before !== op.status) {
    const tokens = ["op:*", `op:${op.id}`];
    if (op.target) tokens.push(`optarget:${op.target.type}:${op.target.id}`);
    touch(tokens);
  }
}

function updateOperation(root, op) {
  root.dataset.status = op.status;
  for (const el of within(root, '[data-field="status"]')) el.replaceWith(opStatusBadge(op.status));
  for (const el of within(root, '[data-field="progress"]')) updateProgress(el, op);
  for (const el of within(root, '[data-field="progress-text"]')) el.textContent = progressText(op);
  for (const el of within(root, '[data-field="message"]')) setText(el, op.message);
  for (const el of within(root, '[data-field="summary"]')) setText(el, opSummary(op));
  for (const el of within(root, '[data-field="error"]')) setText(el, op.error);
  for (const el of within(root, '[data-field="started"]')) setTime(el, op.started, "not yet");
  for (const el of within(root, '[data-field="finished"]')) setTime(el, op.finished, "not yet");
  for (const el of within(root, '[data-field="duration"]')) {
    const secs = op.started && op.finished ? (new Date(op.finished) - new Date(op.started)) / 1000 : null;
    setText(el, secs === null ? "" : duration(secs));
  }
  const states = {
    active: isActiveStatus(op.status),
    final: isFinalStatus(op.status),
    failed: op.status === "failed",
    succeeded: op.status === "succeeded",
  };
  for (const el of within(root, "[data-show-when]")) el.hidden = !states[el.dataset.showWhen];
  for (const log of within(root, 'ol[data-field="log"]')) appendLog(log, op.message);
  renderTimes(root);
}

/** Progress messages join the log as they come; the full log is re-read when the operation ends. */
function appendLog(log, message) {
  if (!message) return;
  const last = log.querySelector("li:last-child > span:last-child");
  if (last && last.textContent === message) return;
  log.querySelector(".kv-log-empty")?.remove();
  log.append(h("li", {}, h("time", { datetime: new Date().toISOString(), "data-clock": true }, ""), h("span", {}, message)));
}

function updateActivity(op) {
  if (!op.target) return;
  const key = `${op.target.type}:${op.target.id}`;
  for (const el of $$(`[data-target-activity="${CSS.escape(key)}"]`)) {
    if (isActiveStatus(op.status)) {
      const pct = op.progress === null || op.progress === undefined ? "" : ` · ${op.progress}%`;
      el.replaceChildren(
        h("a", { class: "kv-activity", href: urlFor("Operation", op.id) || "#" }, spinner(), `${op.kind_label || op.kind}${pct}`),
      );
    } else {
      el.replaceChildren();
    }
  }
}

function toastFinished(op) {
  const what = op.kind_label || op.kind;
  const target = op.target?.label ? ` · ${op.target.label}` : "";
  const href = urlFor("Operation", op.id);
  if (op.status === "succeeded") {
    toast({ tone: "green", title: `${what} succeeded`, text: `${op.target?.label || ""}`, href, linkText: "Details" });
  } else if (op.status === "failed") {
    toast({ tone: "red", title: `${what} failed${target}`, text: op.error || "It failed without giving a reason.", href, linkText: "Details and raw message" });
  } else {
    toast({ tone: "grey", title: `${what} cancelled${target}`, href, linkText: "Details" });
  }
}

// ------------------------------------------------------------------ hosts

export function applyHost(host) {
  for (const root of $$(`[data-host-id="${CSS.escape(String(host.id))}"]`)) {
    root.dataset.state = host.state;
    for (const el of within(root, '[data-field="state"]')) el.replaceWith(hostStateBadge(host.state, host.state_label));
    for (const el of within(root, '[data-field="last_seen"]')) setTime(el, host.last_seen, el.dataset.none || "never");
    for (const el of within(root, '[data-field="last_error"]')) setText(el, host.state === "unreachable" ? host.last_error : "");
    for (const key of ["name", "libvirt_version", "hypervisor", "hypervisor_version", "cpus"]) {
      if (key in host) for (const el of within(root, `[data-field="${key}"]`)) setText(el, host[key]);
    }
    if ("memory_kib" in host) for (const el of within(root, '[data-field="memory"]')) setText(el, humanSizeKiB(host.memory_kib));
    if ("virt_types" in host) for (const el of within(root, '[data-field="virt_types"]')) el.replaceWith(virtTypes(host.virt_types));
    for (const el of within(root, "[data-show-when-state]")) el.hidden = el.dataset.showWhenState !== host.state;
  }
  touch([`host:${host.id}`, "host:*"]);
}

function hostDeleted(host) {
  for (const row of $$(`tr[data-host-id="${CSS.escape(String(host.id))}"]`)) row.remove();
  const page = $(`[data-host-page="${CSS.escape(String(host.id))}"]`);
  if (page) {
    toast({
      tone: "grey",
      title: `${host.name || "This host"} was removed from kvmweb`,
      text: "Its hypervisor was not touched.",
      href: document.body.dataset.urlHosts || "/hosts/",
      linkText: "Back to hosts",
      autohide: false,
    });
  }
  touch(["host:*"]);
}

// ------------------------------------------------------------------ live regions

const due = new Set();
let timer = null;
let inFlight = false;
let lastFetch = 0;
const DEBOUNCE = 600;
const MIN_INTERVAL = 1500;

function matches(watch, token) {
  return watch.split(/\s+/).some((w) => w === token || (w.endsWith("*") && token.startsWith(w.slice(0, -1))));
}

/** Mark the regions watching any of these tokens as due for a re-fetch. */
export function touch(tokens) {
  for (const el of $$("[data-live-region][data-live-watch]")) {
    if (tokens.some((t) => matches(el.dataset.liveWatch, t))) due.add(el.dataset.liveRegion);
  }
  if (due.size) schedule();
}

/** Re-fetch every region on the page (after a reconnect, when events may have been missed). */
export function refreshAll() {
  for (const el of $$("[data-live-region]")) due.add(el.dataset.liveRegion);
  if (due.size) schedule(0);
}

function schedule(delay = DEBOUNCE) {
  window.clearTimeout(timer);
  const wait = Math.max(delay, lastFetch + MIN_INTERVAL - Date.now());
  timer = window.setTimeout(run, wait);
}

async function run() {
  if (inFlight) {
    schedule();
    return;
  }
  const names = [...due];
  due.clear();
  if (!names.length) return;
  inFlight = true;
  lastFetch = Date.now();
  try {
    const response = await fetch(window.location.href, {
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch", Accept: "text/html" },
    });
    if (!response.ok || response.redirected) return; // signed out, or the object is gone
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const name of names) {
      const sel = `[data-live-region="${CSS.escape(name)}"]`;
      const current = $(sel);
      const fresh = doc.querySelector(sel);
      if (!current || !fresh) continue;
      const knownOps = new Set($$("[data-operation-id]", current).map((el) => el.dataset.operationId));
      const openDetails = new Set($$("details[open][id]", current).map((el) => el.id));
      const next = document.importNode(fresh, true);
      for (const row of $$("tr[data-operation-id]", next)) {
        if (!knownOps.has(row.dataset.operationId) && knownOps.size) row.classList.add("kv-new-row");
      }
      for (const id of openDetails) next.querySelector(`details#${CSS.escape(id)}`)?.setAttribute("open", "");
      current.replaceWith(next);
      afterSwap(next);
    }
    updateCount();
  } catch (error) {
    console.warn("kvmweb: could not refresh part of the page", error);
  } finally {
    inFlight = false;
    if (due.size) schedule();
  }
}
