// The operations indicator in the top bar and the drawer it opens. The server renders the active
// operations (#ops-active); live messages keep them true; finished ones move to "Recently finished",
// which is kept for the browser tab in sessionStorage.
import { $, $$, h, urlFor } from "./dom.js";
import { isActiveStatus, opStatusBadge, progressBar } from "./states.js";
import { renderTimes } from "./time.js";

const RECENT_KEY = "kvmweb-recent-operations";
const RECENT_MAX = 8;

function loadRecent() {
  try {
    const list = JSON.parse(window.sessionStorage.getItem(RECENT_KEY) || "[]");
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}
let recent = loadRecent();

function saveRecent() {
  try {
    window.sessionStorage.setItem(RECENT_KEY, JSON.stringify(recent));
  } catch {
    /* storage full or disabled: the list lasts for this page */
  }
}

/** The line under an operation: the error when it failed, the latest progress text while it runs. */
export function opSummary(op) {
  if (op.status === "failed") return op.error || "Failed without a reason";
  return isActiveStatus(op.status) ? op.message || "" : "";
}

/** A drawer entry, the same markup as templates/partials/op_item.html. */
export function opItem(op) {
  const when = op.finished || op.started || op.created;
  return h(
    "li",
    { class: "kv-op-item", dataset: { operationId: op.id, status: op.status } },
    h(
      "a",
      { class: "kv-op-link", href: urlFor("Operation", op.id) || "#" },
      h(
        "span",
        { class: "kv-op-line" },
        h("span", { class: "kv-op-title" }, op.kind_label || op.kind, " ", h("span", { class: "kv-op-target" }, op.target?.label || "")),
        opStatusBadge(op.status),
      ),
      progressBar(op),
      h(
        "span",
        { class: "kv-op-meta" },
        h("span", { dataset: { field: "summary" } }, opSummary(op)),
        when ? h("time", { datetime: when, "data-relative": true }, "") : null,
      ),
    ),
  );
}

function renderRecent() {
  const list = $("#ops-recent");
  if (!list) return;
  list.replaceChildren(...recent.map(opItem));
  $("#ops-recent-empty").hidden = recent.length > 0;
  renderTimes(list);
}

export function updateCount() {
  const items = $$("#ops-active > .kv-op-item");
  const n = items.length;
  const button = $("#ops-indicator");
  if (button) {
    button.classList.toggle("is-busy", n > 0);
    const word = button.querySelector(".kv-ops-word");
    if (word) word.textContent = " running";
    button.title = n ? `${n} operation${n === 1 ? "" : "s"} running: show them` : "No operation running: show recent ones";
  }
  for (const el of $$("[data-ops-count]")) {
    el.textContent = String(n);
    if (el.classList.contains("kv-nav-count")) el.hidden = n === 0;
  }
  const empty = $("#ops-active-empty");
  if (empty) empty.hidden = n > 0;
}

/** Put an operation where it belongs in the drawer. Field updates of existing items are done by live.js. */
export function placeOperation(op) {
  const active = $("#ops-active");
  if (!active) return;
  const existing = active.querySelector(`[data-operation-id="${CSS.escape(String(op.id))}"]`);
  if (isActiveStatus(op.status)) {
    if (!existing) {
      active.prepend(opItem(op));
      renderTimes(active);
    }
  } else {
    existing?.remove();
    const slim = {
      id: op.id,
      kind: op.kind,
      kind_label: op.kind_label,
      target: op.target,
      status: op.status,
      progress: op.progress,
      message: op.message,
      error: op.error,
      created: op.created,
      started: op.started,
      finished: op.finished,
    };
    recent = [slim, ...recent.filter((r) => r.id !== op.id)].slice(0, RECENT_MAX);
    saveRecent();
    renderRecent();
  }
  updateCount();
}

export function initDrawer() {
  // Drop recent entries the server still lists as active (a stale tab), then draw.
  const activeIds = new Set($$("#ops-active > .kv-op-item").map((el) => Number(el.dataset.operationId)));
  recent = recent.filter((r) => !activeIds.has(r.id));
  renderRecent();
  updateCount();
}
