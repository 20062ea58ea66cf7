// kvmweb's page script, loaded as an ES module by base.html on every page.
import { initActions } from "./actions.js";
import { $$ } from "./dom.js";
import { initDrawer } from "./drawer.js";
import { initForms } from "./forms.js";
import { enhanceForms, onOperationAccepted } from "./http.js";
import { applyOperation, handleMessage, onContentReplaced, refreshAll } from "./live.js";
import { connectEvents } from "./realtime.js";
import { initSearch, resetSearchCache } from "./search.js";
import { initSelection } from "./selection.js";
import { renderTimes, startClock } from "./time.js";
import { initServerToasts } from "./toasts.js";
import { initWidgets } from "./widgets.js";

function initTheme() {
  const theme = window.kvmwebTheme;
  const buttons = $$("[data-theme-choice]").filter((el) => el.tagName === "BUTTON");
  if (!theme || !buttons.length) return;
  const sync = () => {
    const choice = theme.choice();
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.themeChoice === choice));
  };
  for (const b of buttons) {
    b.addEventListener("click", (event) => {
      event.stopPropagation(); // keep the menu open to show the choice
      theme.set(b.dataset.themeChoice);
      sync();
    });
  }
  sync();
}

function initTooltips(root = document) {
  const Tooltip = window.tabler?.Tooltip;
  if (!Tooltip) return;
  for (const el of $$('[data-bs-toggle="tooltip"]', root)) Tooltip.getOrCreateInstance(el);
}

/** Tabs remember themselves in the URL (#operations), so a reload or a shared link opens the same one. */
function initTabs() {
  const Tab = window.tabler?.Tab;
  const tabs = $$('[data-bs-toggle="tab"][data-hash]');
  if (!tabs.length) return;
  const fromHash = () => {
    const want = window.location.hash.slice(1);
    const tab = tabs.find((t) => t.dataset.hash === want);
    if (tab && Tab) Tab.getOrCreateInstance(tab).show();
  };
  for (const tab of tabs) {
    tab.addEventListener("shown.bs.tab", () => {
      window.history.replaceState(null, "", `#${tab.dataset.hash}`);
      // on a phone the tab strip scrolls sideways: keep the open tab in view
      tab.scrollIntoView({ block: "nearest", inline: "nearest" });
    });
  }
  fromHash();
  window.addEventListener("hashchange", fromHash);
}

/** "0,1,2,3,8" → "0–3, 8" for CPU lists. */
function renderCpuRanges(root = document) {
  for (const el of $$("[data-cpu-ranges]", root)) {
    const ids = (el.textContent.match(/\d+/g) || []).map(Number).sort((a, b) => a - b);
    const parts = [];
    for (let i = 0; i < ids.length; i += 1) {
      let j = i;
      while (j + 1 < ids.length && ids[j + 1] === ids[j] + 1) j += 1;
      parts.push(j > i ? `${ids[i]}–${ids[j]}` : `${ids[i]}`);
      i = j;
    }
    if (parts.length) el.textContent = `(${parts.join(", ")})`;
  }
}

/** Counters that follow the rows they count: <span data-count-of="#tab-operations tr[...]">. */
function renderCounts() {
  for (const el of $$("[data-count-of]")) {
    const n = document.querySelectorAll(el.dataset.countOf).length;
    el.textContent = String(n);
    el.hidden = n === 0;
  }
}

/** Wire up content the live updates swapped in. */
function initContent(root) {
  renderCounts();
  renderCpuRanges(root);
  renderTimes(root);
  enhanceForms(root);
  initForms(root);
  initActions(root);
  initTooltips(root);
  initSelection(root);
  initWidgets(root);
  resetSearchCache(root);
}

initTheme();
initTabs();
renderCpuRanges();
initServerToasts();
startClock();
enhanceForms();
initForms();
initActions();
initSearch();
initDrawer();
initSelection();
initWidgets();
onContentReplaced(initContent);
onOperationAccepted((op) => applyOperation(op));

const wsUrl = document.body.dataset.wsUrl;
if (wsUrl) {
  connectEvents(wsUrl, {
    onMessage: handleMessage,
    onOpen: ({ reconnected }) => {
      // Events may have been missed while away (or between the page render and this connection):
      // bring the live parts of the page up to date once.
      const activeAtLoad = document.querySelector("#ops-active > .kv-op-item");
      if (reconnected || activeAtLoad) refreshAll();
    },
  });
}
