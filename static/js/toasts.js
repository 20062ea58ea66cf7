// Toasts: Django messages rendered by the server (partials/messages.html) and the ones the live
// updates raise. Errors stay until dismissed; the others fade after a few seconds.
import { $, $$, h, icon } from "./dom.js";

const ICONS = { green: "circle-check", red: "circle-x", amber: "alert-triangle", blue: "info-circle", grey: "circle-minus" };
const MAX_VISIBLE = 5;

function Toast() {
  return window.tabler?.Toast || window.tabler?.bootstrap?.Toast || null;
}

function arm(el, autohide) {
  const T = Toast();
  el.addEventListener("hidden.bs.toast", () => el.remove());
  if (!T) {
    el.querySelector(".btn-close")?.addEventListener("click", () => el.remove());
    if (autohide) window.setTimeout(() => el.remove(), 7000);
    return;
  }
  el.classList.remove("show");
  T.getOrCreateInstance(el, { autohide, delay: 7000, animation: true }).show();
}

function container() {
  return $("#toasts") || document.body.appendChild(h("div", { class: "toast-container kv-toasts", id: "toasts", "aria-live": "polite" }));
}

function trim() {
  const shown = $$(".kv-toast", container());
  for (const el of shown.slice(0, Math.max(0, shown.length - MAX_VISIBLE))) el.remove();
}

/**
 * toast({tone: "green"|"red"|"amber"|"blue"|"grey", title, text, href, linkText, detail, autohide})
 * `detail` (the raw libvirt message) is shown folded under the text.
 */
export function toast({ tone = "blue", title = "", text = "", href = null, linkText = "Details", detail = "", autohide } = {}) {
  const hide = autohide ?? tone !== "red";
  const body = h(
    "div",
    { class: "kv-toast-text" },
    title ? h("div", { class: "kv-toast-title" }, title) : null,
    text ? h("div", {}, text) : null,
    detail ? h("details", { class: "kv-raw" }, h("summary", {}, "Show the raw message"), h("pre", {}, detail)) : null,
    href ? h("a", { href }, linkText, " ", icon("arrow-right")) : null,
  );
  const el = h(
    "div",
    { class: `toast kv-toast kv-toast-${tone}`, role: tone === "red" ? "alert" : "status", "aria-atomic": "true" },
    h(
      "div",
      { class: "kv-toast-body" },
      h("i", { class: `ti ti-${ICONS[tone] || "info-circle"} kv-toast-icon`, "aria-hidden": "true" }),
      body,
      h("button", { type: "button", class: "btn-close", "data-bs-dismiss": "toast", "aria-label": "Dismiss" }),
    ),
  );
  container().append(el);
  trim();
  arm(el, hide);
  return el;
}

/** Arm the server-rendered message toasts (already visible without JavaScript). */
export function initServerToasts(root = document) {
  for (const el of $$("[data-message]", root)) {
    if (el.dataset.armed) continue;
    el.dataset.armed = "1";
    arm(el, el.dataset.autohide !== "false");
  }
}

/** Show the message toasts found in another page's HTML (the answer to a fetch-submitted form). */
export function adoptMessages(doc) {
  const found = $$("#toasts [data-message]", doc);
  for (const el of found) {
    const copy = document.importNode(el, true);
    container().append(copy);
  }
  trim();
  initServerToasts(container());
  return found.length;
}
