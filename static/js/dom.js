// Small DOM helpers shared by the modules. No framework: elements are built with h(), and text
// always goes in through textContent, never innerHTML.

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/** h("span", {class: "x", dataset: {field: "status"}}, "text", child) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") el.setAttribute("style", value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const icon = (name) => h("i", { class: `ti ti-${name}`, "aria-hidden": "true" });
export const spinner = () => h("span", { class: "spinner-border kv-spinner", "aria-hidden": "true" });

/** URL of an object page, from the templates the server put on <body> (kind: "Operation", "Host", "Vm").
 *  Their placeholder is 987654321, or the all-zero UUID for pages keyed by UUID. */
export function urlFor(kind, id) {
  const template = document.body.dataset[`url${kind}`];
  if (!template) return null;
  const value = encodeURIComponent(String(id));
  return template.replace("987654321", value).replace("00000000-0000-0000-0000-000000000000", value);
}

/** The same words as Django's filesizeformat (1024-based, one decimal), from a size in KiB. */
export function humanSizeKiB(kib) {
  if (kib === null || kib === undefined || kib === "" || Number.isNaN(Number(kib))) return null;
  let bytes = Number(kib) * 1024;
  if (bytes < 1024) return `${bytes}\u00a0bytes`;
  const units = ["KB", "MB", "GB", "TB", "PB"];
  let unit = -1;
  do {
    bytes /= 1024;
    unit += 1;
  } while (bytes >= 1024 && unit < units.length - 1);
  return `${bytes.toFixed(1)}\u00a0${units[unit]}`;
}

/** Set a [data-field] child's text; elements with data-empty show that text when the value is empty. */
export function setText(el, value) {
  if (!el) return;
  const empty = value === null || value === undefined || value === "";
  el.textContent = empty ? el.dataset.empty || "" : String(value);
  el.classList.toggle("kv-missing", empty && !!el.dataset.empty);
  if (el.hasAttribute("data-hide-empty")) el.hidden = empty;
}

/** Every element in `root` (and root itself) matching selector. */
export function within(root, selector) {
  const found = $$(selector, root);
  if (root.matches && root.matches(selector)) found.unshift(root);
  return found;
}
