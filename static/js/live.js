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
//   [data-vm-id="<uuid>"][data-version="7"]  a VM's element (a list row, the VM page); inside it:
//       [data-field="state"] (badge), "name", "vcpus", "memory" (from memory_kib), "changed" (<time>),
//       "spark" (the cell that holds the CPU sparkline while the VM runs). A vm.state message is
//       applied only when its version is newer than data-version: older ones are dropped.
//   Fields belong to the nearest object element around them: a host page's VM rows keep their own
//   state badges when a host.state message arrives.
//   [data-target-activity="host:3"] shows the active operation on that object (spinner, words, %)
//   [data-live-region="name"] [data-live-watch="host:3 host:* op:* op:12 optarget:host:3"]
//       a part of the page re-fetched (fetch(location.href), one request, debounced) and swapped
//       when a matching event arrives; every region is also re-fetched after a reconnect.
//       VM tokens: "vm:<uuid>" (a newer vm.state for that VM), "vmnew:<host>" (a vm.state for a VM
//       this page does not show, or one that moved host), "vmbulk:<host>" (vm.bulk: many changed).
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
  vmStateBadge,
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
    case "vm.state":
      if (message.vm) applyVm(message);
      break;
    case "vm.bulk":
      touch([`vmbulk:${message.host}`]);
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
  // An outcome is final. The request's "pending" and the worker's outcome are pushed by different processes,
  // so the first can arrive second: drop it rather than put a finished operation back among the active.
  if (isFinalStatus(before) && !isFinalStatus(op.status)) return;
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

// ------------------------------------------------------------------ objects and their fields

const OBJECT_ROOTS = "[data-host-id], [data-vm-id], [data-operation-id]";

/** The elements matching selector that belong to root's object, not to another object nested in it. */
function own(root, selector) {
  return within(root, selector).filter((el) => el === root || el.closest(OBJECT_ROOTS) === root);
}

// ------------------------------------------------------------------ hosts

export function applyHost(host) {
  for (const root of $$(`[data-host-id="${CSS.escape(String(host.id))}"]`)) {
    root.dataset.state = host.state;
    for (const el of own(root, '[data-field="state"]')) el.replaceWith(hostStateBadge(host.state, host.state_label));
    for (const el of own(root, '[data-field="last_seen"]')) setTime(el, host.last_seen, el.dataset.none || "never");
    // The owners of a host's VMs get its state without the error text (hosts/messages.py).
    if ("last_error" in host) {
      for (const el of own(root, '[data-field="last_error"]')) setText(el, host.state === "unreachable" ? host.last_error : "");
    }
    for (const key of ["name", "libvirt_version", "hypervisor", "hypervisor_version", "cpus"]) {
      if (key in host) for (const el of own(root, `[data-field="${key}"]`)) setText(el, host[key]);
    }
    if ("memory_kib" in host) for (const el of own(root, '[data-field="memory"]')) setText(el, humanSizeKiB(host.memory_kib));
    if ("virt_types" in host) for (const el of own(root, '[data-field="virt_types"]')) el.replaceWith(virtTypes(host.virt_types));
    for (const el of own(root, "[data-show-when-state]")) el.hidden = el.dataset.showWhenState !== host.state;
  }
  touch([`host:${host.id}`, "host:*"]);
}

// ------------------------------------------------------------------ VMs

/**
 * {"type": "vm.state", "vm": uuid, "host": 3, "name", "state", "state_label", "reason", "vcpus",
 *  "memory_kib", "autostart", "version"}: update the VM's elements in place when the message is
 * newer than what they show, then let the regions that watch the VM fetch the rest.
 */
// The newest vm.state seen per VM, so a region fetched just before a message cannot roll it back.
const latestVm = new Map();
const LATEST_MAX = 2000;

function rememberVm(vm) {
  const known = latestVm.get(String(vm.vm));
  if (known && Number(known.version) >= Number(vm.version)) return;
  latestVm.delete(String(vm.vm));
  latestVm.set(String(vm.vm), vm);
  if (latestVm.size > LATEST_MAX) latestVm.delete(latestVm.keys().next().value);
}

/** After a swap: re-apply messages newer than what the fetched HTML shows. */
function reapplyVms(root) {
  for (const el of within(root, "[data-vm-id][data-version]")) {
    const vm = latestVm.get(el.dataset.vmId);
    if (vm && Number(vm.version) > Number(el.dataset.version || 0)) applyVm(vm, { quiet: true });
  }
}

export function applyVm(vm, { quiet = false } = {}) {
  const id = String(vm.vm);
  const version = Number(vm.version);
  if (Number.isFinite(version)) rememberVm(vm);
  const roots = $$(`[data-vm-id="${CSS.escape(id)}"]`);
  let applied = roots.length === 0;
  const moved = new Set();
  for (const root of roots) {
    if (Number.isFinite(version) && version <= Number(root.dataset.version || 0)) continue; // stale: drop it
    applied = true;
    if (Number.isFinite(version)) root.dataset.version = String(version);
    const stateChanged = root.dataset.state !== vm.state;
    root.dataset.state = vm.state;
    if (vm.host !== undefined && root.dataset.host && root.dataset.host !== String(vm.host)) {
      moved.add(root.dataset.host);
      root.dataset.host = String(vm.host);
    }
    for (const el of own(root, '[data-field="state"]')) el.replaceWith(vmStateBadge(vm.state, vm.state_label, vm.reason));
    if ("name" in vm) for (const el of own(root, '[data-field="name"]')) setText(el, vm.name);
    if ("vcpus" in vm) for (const el of own(root, '[data-field="vcpus"]')) setText(el, vm.vcpus);
    if ("memory_kib" in vm) for (const el of own(root, '[data-field="memory"]')) setText(el, humanSizeKiB(vm.memory_kib));
    if (stateChanged) for (const el of own(root, '[data-field="changed"]')) setTime(el, new Date().toISOString());
    for (const cell of own(root, '[data-field="spark"]')) updateSpark(cell, id, vm.state === "running");
  }
  if (!applied || quiet) return;
  const tokens = [`vm:${id}`];
  if (!roots.length) tokens.push(`vmnew:${vm.host}`);
  for (const host of moved) tokens.push(`vmnew:${host}`, `vmnew:${vm.host}`);
  touch(tokens);
}

/** A running VM's row shows a CPU sparkline (filled by stats.js); other states show none. */
function updateSpark(cell, id, running) {
  const spark = cell.querySelector(".kv-spark");
  if (running && !spark) {
    cell.append(h("span", { class: "kv-spark", "aria-label": "CPU usage", dataset: { statsObject: `vm:${id}`, statsMetric: "cpu" } }));
  } else if (!running && spark) {
    spark.remove();
  }
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

/**
 * What the user did inside a region that its fresh copy would undo, by element id: fields typed in or
 * changed (not hidden ones: the server's are newer), and sections opened (<details>, collapses).
 */
function userState(root) {
  const fields = [];
  for (const el of $$("input[id], select[id], textarea[id]", root)) {
    // a form the server accepted is answered by its fresh copy (http.js marks it sent)
    if (el.type === "hidden" || el.type === "file" || el.form?.dataset.sent) continue;
    if (el.type === "checkbox" || el.type === "radio") {
      if (el.checked !== el.defaultChecked) fields.push([el.id, "checked", el.checked]);
    } else if (el.tagName === "SELECT") {
      if ([...el.options].some((o) => o.selected !== o.defaultSelected)) fields.push([el.id, "value", el.value]);
    } else if (el.value !== el.defaultValue) {
      fields.push([el.id, "value", el.value]);
    }
  }
  const details = $$("details[open][id]", root).map((el) => el.id);
  const collapses = $$(".collapse.show[id]", root).map((el) => el.id);
  return { fields, details, collapses };
}

function restoreUserState(root, { fields, details, collapses }) {
  const byId = (id) => root.querySelector(`#${CSS.escape(id)}`);
  for (const [id, prop, value] of fields) {
    const el = byId(id);
    // a choice the fresh copy no longer offers is left to it
    if (el?.tagName === "SELECT" && ![...el.options].some((o) => o.value === value)) continue;
    if (el) el[prop] = value;
  }
  for (const id of details) {
    const el = byId(id);
    if (el?.tagName === "DETAILS") el.open = true;
  }
  for (const id of collapses) {
    byId(id)?.classList.add("show");
    for (const toggle of $$(`[data-bs-toggle="collapse"][href="#${CSS.escape(id)}"], [data-bs-target="#${CSS.escape(id)}"]`, root)) {
      toggle.classList.remove("collapsed");
      toggle.setAttribute("aria-expanded", "true");
    }
  }
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
      const focusedId = current.contains(document.activeElement) ? document.activeElement.id : "";
      const knownOps = new Set($$("[data-operation-id]", current).map((el) => el.dataset.operationId));
      const kept = userState(current);
      const next = document.importNode(fresh, true);
      for (const row of $$("tr[data-operation-id]", next)) {
        if (!knownOps.has(row.dataset.operationId) && knownOps.size) row.classList.add("kv-new-row");
      }
      restoreUserState(next, kept);
      current.replaceWith(next);
      reapplyVms(next);
      afterSwap(next);
      if (focusedId) next.querySelector(`#${CSS.escape(focusedId)}`)?.focus({ preventScroll: true });
    }
    updateCount();
  } catch (error) {
    console.warn("kvmweb: could not refresh part of the page", error);
  } finally {
    inFlight = false;
    if (due.size) schedule();
  }
}
