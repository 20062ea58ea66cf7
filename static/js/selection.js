// Bulk selection in a table. The markup:
//   [data-bulk-scope]                  the card around the table and its bar
//     input[data-select-all]           in the header: selects every row on this page
//     input[data-select-item][value]   one per row, the value being the object's id (a VM's UUID)
//     [data-bulk-bar]                  shown while something is selected, with [data-bulk-count]
//     button[data-bulk-clear]          clears the selection
// Shift-click selects a range. The selection is kept by value, so it survives the rows being
// re-rendered by a live update; rows that left the page leave the selection too. Other modules
// read it with selectedIds(scope) and hear about changes through the "kv:selection" event.
import { $, $$ } from "./dom.js";

const selected = new WeakMap(); // scope → Set of values
const lastClicked = new WeakMap(); // scope → the value clicked last, for shift-click ranges

const items = (scope) => $$("input[data-select-item]", scope);

export function selectedIds(scope) {
  return [...(selected.get(scope) || [])];
}

function sync(scope) {
  const set = selected.get(scope);
  const boxes = items(scope);
  const present = new Set(boxes.map((b) => b.value));
  for (const value of [...set]) if (!present.has(value)) set.delete(value);
  for (const box of boxes) {
    box.checked = set.has(box.value);
    box.closest("tr")?.classList.toggle("kv-selected", box.checked);
  }
  const all = $("input[data-select-all]", scope);
  if (all) {
    all.checked = boxes.length > 0 && set.size === boxes.length;
    all.indeterminate = set.size > 0 && set.size < boxes.length;
    all.disabled = boxes.length === 0;
  }
  const bar = $("[data-bulk-bar]", scope);
  if (bar) {
    bar.hidden = set.size === 0;
    for (const el of $$("[data-bulk-count]", bar)) el.textContent = String(set.size);
  }
  scope.dispatchEvent(new CustomEvent("kv:selection", { bubbles: true, detail: { ids: [...set] } }));
}

function onChange(scope, event) {
  const box = event.target;
  if (!(box instanceof HTMLInputElement)) return;
  const set = selected.get(scope);
  if (box.matches("[data-select-all]")) {
    for (const b of items(scope)) {
      if (box.checked) set.add(b.value);
      else set.delete(b.value);
    }
  } else if (box.matches("[data-select-item]")) {
    if (box.checked) set.add(box.value);
    else set.delete(box.value);
  } else {
    return;
  }
  sync(scope);
}

function onClick(scope, event) {
  const box = event.target;
  if (!(box instanceof HTMLInputElement) || !box.matches("[data-select-item]")) return;
  const previous = lastClicked.get(scope);
  lastClicked.set(scope, box.value);
  if (!event.shiftKey || !previous || previous === box.value) return;
  const boxes = items(scope);
  const from = boxes.findIndex((b) => b.value === previous);
  const to = boxes.indexOf(box);
  if (from < 0 || to < 0) return;
  const set = selected.get(scope);
  const [a, b] = from < to ? [from, to] : [to, from];
  // the clicked box has already flipped: the whole range follows it
  for (const other of boxes.slice(a, b + 1)) {
    if (box.checked) set.add(other.value);
    else set.delete(other.value);
  }
  sync(scope);
}

/** Wire up the scopes in root (once each), or bring them in line after a live re-render. */
export function initSelection(root = document) {
  const scopes = $$("[data-bulk-scope]", root);
  const around = root instanceof Element ? root.closest("[data-bulk-scope]") : null;
  if (around && !scopes.includes(around)) scopes.push(around);
  for (const scope of scopes) {
    if (!selected.has(scope)) {
      selected.set(scope, new Set(items(scope).filter((b) => b.checked).map((b) => b.value)));
      scope.addEventListener("change", (event) => onChange(scope, event));
      scope.addEventListener("click", (event) => onClick(scope, event));
      $("[data-bulk-clear]", scope)?.addEventListener("click", () => {
        selected.get(scope).clear();
        sync(scope);
        $("input[data-select-all]", scope)?.focus();
      });
    }
    sync(scope);
  }
}
