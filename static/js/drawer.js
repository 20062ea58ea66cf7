// The operations indicator in the top bar and the drawer it opens. The server renders the active
// operations (#ops-active); live messages keep them true; finished ones move to "Recently finished",
// which is kept for the browser tab in sessionStorage.
import { initActions } from "./actions.js";
import { $, $$, h, urlFor } from "./dom.js";
import { enhanceForms } from "./http.js";
import { isActiveStatus, opStatusBadge, progressBar } from "./states.js";
import { renderTimes } from "./time.js";

const RECENT_KEY = "kvmweb-recent-operations";
const RECENT_MAX = 8;
const ZERO_UUID = "00000000-0000-0000-0000-000000000000";

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

/** Force off under a failed operation whose result suggests it (a shutdown that timed out): the form of
 *  partials/force_off_form.html, which the server renders into <template id="ops-force-off"> with its CSRF token. */
function forceOffForm(op) {
  const template = $("#ops-force-off");
  if (!template || op.status !== "failed" || op.target?.type !== "vm" || op.suggest !== "force-off") return null;
  const form = template.content.querySelector("form").cloneNode(true);
  // replaced by functions: a name's "$&" must stay as it is
  form.setAttribute("action", form.getAttribute("action").replace(ZERO_UUID, () => encodeURIComponent(op.target.id)));
  form.dataset.confirm = form.dataset.confirm.replace("{vm}", () => op.target.label || "");
  // under the entry's link, in line with its padding (.kv-op-link: 0.75rem 1rem)
  form.classList.replace("mt-2", "px-3");
  form.classList.add("pb-3");
  return form;
}

/** A drawer entry, the same markup as templates/partials/op_item.html, and Force off when the failure suggests it. */
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
    forceOffForm(op),
  );
}

function renderRecent() {
  const list = $("#ops-recent");
  if (!list) return;
  list.replaceChildren(...recent.map(opItem));
  $("#ops-recent-empty").hidden = recent.length > 0;
  renderTimes(list);
  enhanceForms(list);
  initActions(list);
}

/** As on a VM's page, only the newest operation on an object offers what its failure suggests: a later one
 *  (the Force off itself, a start) takes the offer from the older ones. True when one lost it. */
function supersede(op) {
  const older = (r) => r.id < op.id && r.suggest && r.target?.type === op.target?.type && r.target?.id === op.target?.id;
  if (!recent.some(older)) return false;
  recent = recent.map((r) => (older(r) ? { ...r, suggest: null } : r));
  return true;
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
  const superseded = supersede(op);
  if (isActiveStatus(op.status)) {
    if (!existing) {
      active.prepend(opItem(op));
      renderTimes(active);
    }
    if (superseded) {
      saveRecent();
      renderRecent();
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
      suggest: op.suggest,
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
