// The VM page's Logs tab: its body (templates/vms/tab_logs.html) is fetched when the tab is first
// opened, and again on Refresh, so the page itself renders without reading any file.
import { $, $$, h, icon, spinner } from "./dom.js";
import { csrfFetch } from "./http.js";
import { initWidgets } from "./widgets.js";

const holder = $("[data-vm-logs]");
const pane = $("#tab-logs");
const tabButton = $("#tab-logs-btn");
let loaded = false;
let loading = false;

function showError(text) {
  holder.replaceChildren(
    h(
      "div",
      { class: "card" },
      h(
        "div",
        { class: "kv-card-empty" },
        h("i", { class: "ti ti-alert-circle", "aria-hidden": "true", style: "color: var(--kv-red)" }),
        text,
        " ",
        h("button", { type: "button", class: "btn btn-sm", "data-logs-refresh": "" }, icon("refresh"), " Try again"),
      ),
    ),
  );
}

async function load() {
  if (!holder || loading) return;
  loading = true;
  const button = $("[data-logs-refresh]", holder);
  if (button) {
    button.disabled = true;
    button.prepend(spinner());
  }
  try {
    const response = await csrfFetch(holder.dataset.url, { headers: { Accept: "text/html" } });
    if (!response.ok) {
      showError(response.status === 404 ? "This VM is not visible to you any more." : `The server answered ${response.status}.`);
      return;
    }
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const body = doc.querySelector("[data-logs-body]");
    if (!body) {
      showError("The server sent something unexpected; try again.");
      return;
    }
    holder.replaceChildren(document.importNode(body, true));
    initWidgets(holder);
    // the newest lines are at the end
    for (const pre of $$("[data-log-text]", holder)) pre.scrollTop = pre.scrollHeight;
    loaded = true;
  } catch {
    showError("The logs could not be fetched: is the connection down?");
  } finally {
    loading = false;
  }
}

if (holder) {
  holder.addEventListener("click", (event) => {
    if (event.target.closest("[data-logs-refresh]")) load();
  });
  tabButton?.addEventListener("shown.bs.tab", () => {
    if (!loaded) load();
  });
  // the tab may already be open (a #logs link): app.js showed it before this module ran
  if (pane?.classList.contains("active")) load();
}
