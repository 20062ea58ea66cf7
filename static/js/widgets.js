// Small page widgets:
//   button[data-copy-target="#vm-xml"]   copies that element's text; the button says "Copied" for a moment
//   [data-range-switch][data-range-target=".kv-chart"] with button[data-range="1h"|"1d"|"30d"]
//       sets data-stats-range on the charts it targets (static/js/stats.js follows the attribute)
//   [data-number]                        an integer shown with the viewer's digit grouping (2,000,000)
import { $$, icon } from "./dom.js";
import { toast } from "./toasts.js";

const numbers = new Intl.NumberFormat();

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // http:// on a LAN address: no Clipboard API, so use a hidden text area
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("copy refused");
}

function initCopy(root) {
  for (const button of $$("button[data-copy-target]", root)) {
    if (button.dataset.copyReady) continue;
    button.dataset.copyReady = "1";
    button.addEventListener("click", async () => {
      const target = document.querySelector(button.dataset.copyTarget);
      if (!target) return;
      const before = [...button.childNodes];
      const label = button.getAttribute("aria-label");
      try {
        await copyText(target.textContent);
      } catch {
        toast({ tone: "red", title: "Could not copy", text: "Select the text and copy it by hand." });
        return;
      }
      const hasText = before.some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
      button.replaceChildren(icon("check"), hasText ? " Copied" : "");
      if (label) button.setAttribute("aria-label", "Copied");
      window.setTimeout(() => {
        button.replaceChildren(...before);
        if (label) button.setAttribute("aria-label", label);
      }, 1800);
    });
  }
}

function initRangeSwitch(root) {
  for (const group of $$("[data-range-switch]", root)) {
    if (group.dataset.rangeReady) continue;
    group.dataset.rangeReady = "1";
    const buttons = $$("button[data-range]", group);
    for (const button of buttons) {
      button.addEventListener("click", () => {
        for (const b of buttons) b.setAttribute("aria-pressed", String(b === button));
        for (const chart of $$(group.dataset.rangeTarget)) chart.dataset.statsRange = button.dataset.range;
      });
    }
  }
}

function renderNumbers(root) {
  for (const el of $$("[data-number]:not([data-number-done])", root)) {
    const text = el.textContent.trim();
    const n = Number(text);
    if (text !== "" && Number.isFinite(n)) el.textContent = numbers.format(n);
    el.dataset.numberDone = "";
  }
}

export function initWidgets(root = document) {
  initCopy(root);
  initRangeSwitch(root);
  renderNumbers(root);
}
