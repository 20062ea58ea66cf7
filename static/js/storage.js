// Live storage pages: the storage list, a pool's page, a volume's page and a host's Storage tab.
// They hold live regions (see live.js) that re-read themselves when these tokens are touched:
//   "pool:<id>"      a pool.state message for that pool (its row or its volumes' rows changed)
//   "poolstate:<id>" the same, when the pool's state differs from the one its page shows (the whole
//                    page is re-read then; otherwise only its space and volume table, so a form being
//                    filled in keeps its text)
//   "poolhost:<id>"  a pool.state message for any pool of that host
//   "saved:<host>"   a VM of that host may have gained or lost a saved (managed-save) state
// Everything arrives over the page's one WebSocket; nothing here polls.
import { $, $$, h } from "./dom.js";
import { touch } from "./live.js";
import { onEvents } from "./realtime.js";

function poolChanged(pool) {
  const tokens = [`pool:${pool.id}`, `poolhost:${pool.host}`];
  const page = $(`[data-pool-page="${CSS.escape(String(pool.id))}"]`);
  if (page && page.dataset.poolState !== pool.state) tokens.push(`poolstate:${pool.id}`);
  touch(tokens);
  const volumePage = $("[data-volume-page]");
  if (volumePage && volumePage.dataset.poolId === String(pool.id)) checkVolumeStillThere(volumePage);
}

// A volume deleted while its page is open: the page's regions cannot be re-read (it answers 404),
// so say so once, instead of showing a volume that is no longer there.
async function checkVolumeStillThere(page) {
  if (page.dataset.gone) return;
  try {
    const response = await fetch(window.location.href, { method: "HEAD", credentials: "same-origin" });
    if (response.status !== 404 || page.dataset.gone) return;
  } catch {
    return; // offline: the reconnect re-reads the page's regions
  }
  page.dataset.gone = "1";
  for (const form of $$("form", page)) for (const control of form.elements) control.disabled = true;
  for (const link of $$("a[download]", page)) {
    link.classList.add("disabled");
    link.setAttribute("aria-disabled", "true");
    link.removeAttribute("href");
  }
  const pool = $('.kv-pretitle a[href*="/pools/"]', page);
  page.prepend(
    h(
      "div",
      { class: "kv-alert kv-tone-grey kv-alert-gone", role: "status" },
      h("i", { class: "ti ti-ghost", "aria-hidden": "true" }),
      h(
        "div",
        {},
        h("div", { class: "kv-alert-title" }, "This volume no longer exists"),
        h("div", { class: "kv-hint" }, "It was deleted from its pool. ", pool ? h("a", { href: pool.href }, "Back to the pool") : ""),
      ),
    ),
  );
}

// A vm.state message does not say whether a saved image exists: a VM listed as saved changed
// (it may have been restored or discarded), or an unlisted one is now shut off (it may have been
// saved). Other changes leave the saved-state lists alone.
function vmChanged(message) {
  const listed = $$("[data-saved-vm]").some((el) => el.dataset.savedVm === String(message.vm));
  if (listed || message.state === "shutoff") touch([`saved:${message.host}`]);
}

onEvents({
  onMessage(message) {
    if (message.type === "pool.state" && message.pool && message.pool.id !== undefined) poolChanged(message.pool);
    else if (message.type === "vm.state" && message.vm) vmChanged(message);
    else if (message.type === "vm.bulk") touch([`saved:${message.host}`]);
  },
});

// Only a qcow2 copy can be compressed: the box is off and disabled while raw is chosen.
function followCopyFormat() {
  const format = $("#cl-format");
  const compress = $("#cl-compress");
  if (!format || !compress) return;
  const sync = () => {
    compress.disabled = format.value !== "qcow2";
    if (compress.disabled) compress.checked = false;
  };
  format.addEventListener("change", sync);
  sync();
}

followCopyFormat();
