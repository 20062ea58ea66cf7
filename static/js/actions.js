// VM power actions: the VM page's action bar and the VM list's bulk bar.
//
//   details.kv-menu > summary + .dropdown-menu   a menu that opens without JavaScript; here it also
//       closes on an outside click or Escape, and opens leftwards or rightwards to stay on screen
//   form[data-confirm] / button[data-confirm]     asks first, in a dialog that names the object:
//       data-confirm (the question, then why: "Force off demo? Unsaved data is lost."; "{count}"
//       becomes "3 VMs"), data-confirm-label
//       (the confirm button's words), data-confirm-danger (red). Without JavaScript the form's
//       required input[data-confirm-check] ("I understand") does the asking; here it is hidden.
//   form[data-vm-action="shutdown"] inside [data-vm-page]   after it is accepted, its button stays
//       busy until the VM's state changes live (vm.state) or the VM's operation of that kind ends
//   form[data-bulk-form] with button[data-bulk-action]   sends the selection (selection.js) as
//       repeated `vms` fields, then shows the batch in [data-batch-bar]: queued · running · done ·
//       failed, from the `operation` messages whose target is one of the VMs and whose kind is
//       vm.<action>, created after the submit.
import { $, $$, h, icon, spinner } from "./dom.js";
import { onEvents } from "./realtime.js";
import { selectedIds } from "./selection.js";

// ------------------------------------------------------------------ menus

function placeMenu(menu) {
  const list = menu.querySelector(":scope > .dropdown-menu");
  if (!list) return;
  menu.classList.remove("kv-menu-start");
  const rect = list.getBoundingClientRect();
  if (rect.left < 8) menu.classList.add("kv-menu-start");
}

function initMenus(root) {
  for (const menu of $$("details.kv-menu", root)) {
    if (menu.dataset.menuReady) continue;
    menu.dataset.menuReady = "1";
    const summary = menu.querySelector(":scope > summary");
    summary?.setAttribute("aria-haspopup", "menu");
    summary?.setAttribute("aria-expanded", String(menu.open));
    menu.addEventListener("toggle", () => {
      summary?.setAttribute("aria-expanded", String(menu.open));
      if (!menu.open) return;
      for (const other of $$("details.kv-menu[open]")) if (other !== menu && !other.contains(menu)) other.open = false;
      placeMenu(menu);
    });
  }
}

document.addEventListener("click", (event) => {
  for (const menu of $$("details.kv-menu[open]")) {
    // a click inside keeps it open, except on an item, which does its thing and closes the menu
    if (!menu.contains(event.target)) menu.open = false;
    else if (event.target.closest(".dropdown-item")) window.setTimeout(() => (menu.open = false), 0);
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  const menu = event.target.closest?.("details.kv-menu[open]") || $("details.kv-menu[open]");
  if (!menu) return;
  menu.open = false;
  menu.querySelector(":scope > summary")?.focus();
});

// ------------------------------------------------------------------ confirmation

let dialog = null;

function buildDialog() {
  const title = h("h3", { class: "kv-confirm-title", id: "kv-confirm-title" });
  const text = h("div", { class: "text-secondary", id: "kv-confirm-text" });
  const ok = h("button", { type: "button", class: "btn btn-danger w-100", "data-confirm-ok": true });
  const el = h(
    "div",
    { class: "modal modal-blur fade", id: "kv-confirm", tabindex: "-1", role: "dialog", "aria-modal": "true", "aria-labelledby": "kv-confirm-title", "aria-describedby": "kv-confirm-text" },
    h(
      "div",
      { class: "modal-dialog modal-sm modal-dialog-centered", role: "document" },
      h(
        "div",
        { class: "modal-content" },
        h("button", { type: "button", class: "btn-close", "data-bs-dismiss": "modal", "aria-label": "Cancel" }),
        h("div", { class: "modal-status bg-danger" }),
        h("div", { class: "modal-body text-center py-4" }, h("i", { class: "ti ti-alert-triangle kv-confirm-icon", "aria-hidden": "true" }), title, text),
        h(
          "div",
          { class: "modal-footer" },
          h("div", { class: "kv-confirm-buttons" }, h("button", { type: "button", class: "btn w-100", "data-bs-dismiss": "modal" }, "Cancel"), ok),
        ),
      ),
    ),
  );
  document.body.append(el);
  return { el, title, text, ok };
}

/** Ask; resolves true when confirmed. Falls back to window.confirm without Bootstrap's Modal. */
export function confirmAction({ title, text = "", label = "Confirm", danger = true }) {
  const Modal = window.tabler?.Modal || window.bootstrap?.Modal;
  if (!Modal) return Promise.resolve(window.confirm(text ? `${title}\n\n${text}` : title));
  dialog ||= buildDialog();
  const { el, ok } = dialog;
  dialog.title.textContent = title;
  dialog.text.textContent = text;
  dialog.text.hidden = !text;
  ok.textContent = label;
  ok.className = `btn ${danger ? "btn-danger" : "btn-primary"} w-100`;
  el.querySelector(".modal-status").className = `modal-status ${danger ? "bg-danger" : "bg-primary"}`;
  el.querySelector(".kv-confirm-icon").className = `ti ti-${danger ? "alert-triangle" : "help-circle"} kv-confirm-icon${danger ? " text-danger" : ""}`;
  const modal = Modal.getOrCreateInstance(el);
  const opener = document.activeElement;
  return new Promise((resolve) => {
    let answer = false;
    let shown = false;
    const onOk = () => {
      answer = true;
      // Bootstrap ignores hide() while the dialog is still opening: a quick answer would be lost.
      if (shown) modal.hide();
      else el.addEventListener("shown.bs.modal", () => modal.hide(), { once: true });
    };
    ok.addEventListener("click", onOk, { once: true });
    el.addEventListener(
      "shown.bs.modal",
      () => {
        shown = true;
        ok.focus();
      },
      { once: true },
    );
    el.addEventListener(
      "hidden.bs.modal",
      () => {
        ok.removeEventListener("click", onOk);
        if (!answer && opener instanceof HTMLElement && opener.isConnected) opener.focus();
        resolve(answer);
      },
      { once: true },
    );
    modal.show();
  });
}

const plural = (n) => `${n} VM${n === 1 ? "" : "s"}`;

function bulkIds(form) {
  return selectedIds(form.closest("[data-bulk-scope]") || document);
}

// Runs before the fetch enhancement (capture on the document): ask first, then fill in the selection.
document.addEventListener(
  "submit",
  (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    const submitter = event.submitter;
    const bulk = form.matches("[data-bulk-form]");
    const ids = bulk ? bulkIds(form) : [];
    const stop = () => {
      event.preventDefault();
      event.stopImmediatePropagation();
    };
    if (bulk && !ids.length) return stop();

    const asker = submitter?.closest("[data-confirm]") || (form.matches("[data-confirm]") ? form : null);
    if (asker && form.dataset.confirmed !== "1") {
      stop();
      const fill = (s) => (s || "").replaceAll("{count}", plural(ids.length));
      // "Force off demo? This pulls the plug: ..." → the question as the title, the rest under it
      const [, title, text] = fill(asker.dataset.confirm).match(/^(.*?\?)\s+(.*)$/s) || [null, fill(asker.dataset.confirm), ""];
      confirmAction({
        title,
        text,
        label: fill(asker.dataset.confirmLabel) || "Confirm",
        danger: asker.hasAttribute("data-confirm-danger"),
      }).then((yes) => {
        if (!yes) return;
        // A live update may have re-rendered the form while the dialog was open: the user's
        // answer still stands, so the detached form (with its token and fields) is sent as it was.
        if (!form.isConnected) {
          form.hidden = true;
          document.body.append(form);
        }
        form.dataset.confirmed = "1";
        // the "I understand" box is for pages without JavaScript: the dialog just asked
        for (const box of $$("input[data-confirm-check]", form)) box.checked = true;
        form.requestSubmit(submitter && submitter.isConnected ? submitter : undefined);
      });
      return;
    }
    delete form.dataset.confirmed;

    if (bulk) fillSelection(form, ids);
    // the shutdown timeout is the shutdown's alone: the other actions would refuse it
    for (const el of $$("[data-shutdown-only]", form)) el.disabled = submitter?.dataset.bulkAction !== "shutdown";
    if (bulk) startBatch(form, submitter, ids);
    else if (form.matches("[data-vm-action]")) startPending(form, submitter);
  },
  true,
);

/** Hidden `vms` inputs for the selected VMs that no checked row box (form="...") sends already. */
function fillSelection(form, ids) {
  for (const el of $$("input[data-bulk-id]", form)) el.remove();
  const sent = new Set(
    [...form.elements].filter((el) => el.name === "vms" && el.type === "checkbox" && el.checked).map((el) => el.value),
  );
  for (const id of ids) {
    if (!sent.has(id)) form.append(h("input", { type: "hidden", name: "vms", value: id, dataset: { bulkId: "1" } }));
  }
}

// ------------------------------------------------------------------ the VM page: busy until the state follows

// action name → {vm, action, state, since, accepted}; survives the live re-render of the action bar
const pending = new Map();
const PENDING_MAX_MS = 3 * 60 * 1000;

const norm = (kind) => String(kind || "").toLowerCase().replace(/[^a-z0-9.]/g, "");
const kindOf = (action) => norm(`vm.${action}`);

function vmPage() {
  return $("[data-vm-page]");
}

function startPending(form, submitter) {
  const page = vmPage();
  if (!page) return;
  const action = form.dataset.vmAction;
  const entry = { vm: page.dataset.vmPage, action, state: page.dataset.state, since: Date.now(), accepted: false, mode: submitter?.value || "" };
  pending.set(action, entry);
  entry.timer = window.setTimeout(() => clearPending(action), PENDING_MAX_MS);
}

function clearPending(action) {
  const entry = pending.get(action);
  if (!entry) return;
  window.clearTimeout(entry.timer);
  pending.delete(action);
  for (const form of $$(`#vm-actions form[data-vm-action="${CSS.escape(action)}"]`)) unbusy(form);
}

function busyTarget(form) {
  const menu = form.closest("details.kv-more");
  if (menu) return menu.querySelector(":scope > summary");
  return form.querySelector(".kv-split-main") || form.querySelector("[type=submit]");
}

function busy(form) {
  const el = busyTarget(form);
  for (const b of $$("button", form)) b.disabled = true;
  if (!el || el.dataset.kvBusy) return;
  el.dataset.kvBusy = "1";
  el.setAttribute("aria-busy", "true");
  if (el.tagName === "BUTTON") el.disabled = true;
  else el.classList.add("disabled");
  const ic = el.querySelector(".ti");
  if (ic) ic.hidden = true;
  el.prepend(spinner());
  const split = form.querySelector(".kv-split-toggle");
  if (split) split.classList.add("disabled");
}

function unbusy(form) {
  const el = busyTarget(form);
  for (const b of $$("button", form)) b.disabled = false;
  form.querySelector(".kv-split-toggle")?.classList.remove("disabled");
  if (!el || !el.dataset.kvBusy) return;
  delete el.dataset.kvBusy;
  el.removeAttribute("aria-busy");
  if (el.tagName === "BUTTON") el.disabled = false;
  else el.classList.remove("disabled");
  el.querySelector(".kv-spinner")?.remove();
  const ic = el.querySelector(".ti");
  if (ic) ic.hidden = false;
}

/** After a render (page load or a live swap): show the accepted actions as busy again. */
function applyPending(root) {
  for (const entry of pending.values()) {
    if (!entry.accepted) continue;
    for (const form of within(root, `form[data-vm-action="${CSS.escape(entry.action)}"]`)) busy(form);
  }
}

function within(root, selector) {
  const found = $$(selector, root);
  if (root.matches?.(selector)) found.unshift(root);
  return found;
}

document.addEventListener("kv:form-done", (event) => {
  const form = event.target;
  const { ok, refused } = event.detail || {};
  if (form.matches?.("[data-vm-action]")) {
    const entry = pending.get(form.dataset.vmAction);
    if (!entry) return; // the state already followed
    if (!ok || refused) {
      clearPending(entry.action);
      return;
    }
    entry.accepted = true;
    busy(form);
  } else if (form.matches?.("[data-bulk-form]")) {
    if (!batch || batch.form !== form) return;
    // "Shut down: 2 queued; 1 refused: ..." tells how many operations to expect
    const queued = (event.detail.messages || []).join(" ").match(/(\d+) queued/);
    if (queued) batch.expected = Math.max(Number(queued[1]), batch.byVm.size);
    if (!ok || (refused && !batch.expected && !batch.byVm.size)) {
      endBatch();
      return;
    }
    batch.refused = refused;
    // queued: the selection is done with; the bar turns into the batch's progress
    form.closest("[data-bulk-scope]")?.querySelector("[data-bulk-clear]")?.click();
    renderBatch();
  }
});

function onVmState(message) {
  const page = vmPage();
  if (!page || String(message.vm) !== page.dataset.vmPage) return;
  for (const entry of [...pending.values()]) {
    // autostart changes no state: any newer report of the VM means it is done
    if (message.state !== entry.state || entry.action.startsWith("autostart")) clearPending(entry.action);
  }
}

function onVmOperation(op) {
  const page = vmPage();
  if (!page || op.target?.type !== "vm" || String(op.target.id) !== page.dataset.vmPage) return;
  if (op.status !== "succeeded" && op.status !== "failed" && op.status !== "cancelled") return;
  for (const entry of [...pending.values()]) if (norm(op.kind) === kindOf(entry.action)) clearPending(entry.action);
}

// ------------------------------------------------------------------ the VM list: batch progress

let batch = null;
const SKEW_MS = 2 * 60 * 1000; // browser and server clocks may differ; older operations of that kind have ended anyway

function startBatch(form, submitter, ids) {
  const action = submitter?.dataset.bulkAction;
  if (!action) return;
  batch = {
    form,
    action,
    label: submitter.dataset.bulkLabel || action,
    ids: new Set(ids.map(String)),
    since: Date.now(),
    byVm: new Map(), // uuid → {id, status}
    expected: null, // how many the server queued, once its answer is in
    refused: false,
  };
}

function endBatch() {
  batch = null;
  for (const bar of $$("[data-batch-bar]")) {
    bar.hidden = true;
    bar.replaceChildren();
  }
}

function onBatchOperation(op) {
  if (!batch || op.target?.type !== "vm") return;
  const vm = String(op.target.id);
  if (!batch.ids.has(vm) || norm(op.kind) !== kindOf(batch.action)) return;
  if (op.created && new Date(op.created).getTime() < batch.since - SKEW_MS) return;
  const known = batch.byVm.get(vm);
  if (known && known.id !== op.id && Number(op.id) < Number(known.id)) return; // an older one
  batch.byVm.set(vm, { id: op.id, status: op.status });
  renderBatch();
}

function counts() {
  const c = { queued: 0, running: 0, done: 0, failed: 0 };
  for (const { status } of batch.byVm.values()) {
    if (status === "running") c.running += 1;
    else if (status === "succeeded") c.done += 1;
    else if (status === "failed" || status === "cancelled") c.failed += 1;
    else c.queued += 1;
  }
  c.queued += Math.max(0, total() - batch.byVm.size);
  return c;
}

/** The VMs the batch counts: those the server queued once it said so, else those submitted. */
function total() {
  return batch.expected ?? batch.ids.size;
}

function renderBatch() {
  const bar = batch && $("[data-batch-bar]", batch.form.closest("[data-bulk-scope]") || document);
  if (!bar) return;
  const c = counts();
  const count = Math.max(1, c.queued + c.running + c.done + c.failed);
  const finished = c.done + c.failed === count;
  const pct = (n) => `${((100 * n) / count).toFixed(2)}%`;
  // The running part moves, so a batch whose only operations are running never reads as complete.
  const segment = (n, tone, what, moving = false) =>
    n
      ? h("div", {
          class: `progress-bar kv-bg-${tone}${moving ? " progress-bar-striped progress-bar-animated" : ""}`,
          style: `width: ${pct(n)}`,
          title: `${n} ${what}`,
          "data-segment": what,
        })
      : null;
  const part = (n, word, tone) => h("span", { class: `kv-batch-count${n ? ` kv-fg-${tone}` : ""}` }, h("strong", {}, String(n)), ` ${word}`);
  const parts = [
    h(
      "span",
      { class: "kv-batch-title" },
      finished ? icon(c.failed ? "alert-triangle" : "circle-check") : spinner(),
      h("span", {}, `${batch.label} · ${plural(c.queued + c.running + c.done + c.failed)}`),
    ),
    h(
      "span",
      { class: "kv-batch-counts" },
      "Batch: ",
      part(c.queued, "queued", "blue"),
      " · ",
      part(c.running, "running", "blue"),
      " · ",
      part(c.done, "done", "green"),
      " · ",
      part(c.failed, "failed", "red"),
    ),
    h(
      "div",
      {
        class: "progress kv-batch-progress",
        role: "progressbar",
        "aria-label": `Progress of ${batch.label.toLowerCase()} on ${plural(c.queued + c.running + c.done + c.failed)}`,
        "aria-valuemin": "0",
        "aria-valuemax": String(count),
        "aria-valuenow": String(c.done + c.failed),
      },
      segment(c.done, "green", "done"),
      segment(c.failed, "red", "failed"),
      segment(c.running, "blue", "running", true),
    ),
    batch.refused && !finished
      ? h("span", { class: "kv-hint" }, icon("info-circle"), `${batch.ids.size - total()} refused: see the message`)
      : null,
    h(
      "button",
      { type: "button", class: "btn btn-sm btn-ghost-secondary kv-bulkbar-end", onclick: endBatch, title: finished ? "Close" : "Hide: the operations go on" },
      icon("x"),
      h("span", { class: "kv-action-label" }, finished ? " Close" : " Hide"),
    ),
  ];
  bar.replaceChildren(...parts.filter(Boolean));
  bar.classList.toggle("kv-batch-done", finished);
  bar.hidden = false;
}

// ------------------------------------------------------------------ wiring

onEvents({
  onMessage: (message) => {
    if (message.type === "vm.state" && message.vm) onVmState(message);
    else if (message.type === "operation" && message.operation) {
      onVmOperation(message.operation);
      onBatchOperation(message.operation);
    }
  },
});

/** Wire up the menus and confirmation boxes in root; re-show busy actions after a live swap. */
export function initActions(root = document) {
  initMenus(root);
  for (const box of $$("input[data-confirm-check]", root)) {
    box.required = false;
    const label = box.closest("label");
    if (label) label.hidden = true;
  }
  applyPending(root);
}
