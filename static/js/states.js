// One look for state everywhere. These tables are the JavaScript twin of the template partials
// (templates/partials/host_state.html, op_status.html, op_progress.html): same tone, icon, word.
import { h, icon, spinner } from "./dom.js";

export const HOST_STATES = {
  connected: { tone: "green", icon: "plug-connected", label: "Connected" },
  unreachable: { tone: "red", icon: "plug-connected-x", label: "Unreachable" },
  disabled: { tone: "grey", icon: "plug-off", label: "Disabled" },
};

export const OP_STATUSES = {
  pending: { tone: "blue", spin: true, label: "Pending" },
  running: { tone: "blue", spin: true, label: "Running" },
  succeeded: { tone: "green", icon: "circle-check", label: "Succeeded" },
  failed: { tone: "red", icon: "circle-x", label: "Failed" },
  cancelled: { tone: "grey", icon: "circle-minus", label: "Cancelled" },
};

// libvirt's words for a guest (templates/partials/vm_badge.html is the server's twin). The server's
// state_label wins over these labels when a message carries one; a `short` word fits the badge
// and the full label goes in its title.
export const VM_STATES = {
  running: { tone: "green", icon: "player-play", label: "Running" },
  blocked: { tone: "green", icon: "player-play", label: "Blocked" },
  paused: { tone: "amber", icon: "player-pause", label: "Paused" },
  pmsuspended: { tone: "amber", icon: "zzz", label: "Suspended (power management)", short: "Suspended" },
  shutdown: { tone: "blue", spin: true, label: "Shutting down" },
  shutoff: { tone: "grey", icon: "power", label: "Shut off" },
  crashed: { tone: "red", icon: "alert-triangle", label: "Crashed" },
  nostate: { tone: "grey", icon: "help-circle", label: "No state" },
  gone: { tone: "grey", icon: "ghost", label: "Gone", dashed: true },
  migrating: { tone: "blue", spin: true, label: "Migrating" },
  saving: { tone: "blue", spin: true, label: "Saving" },
  creating: { tone: "blue", spin: true, label: "Creating" },
};

export const isActiveStatus = (status) => status === "pending" || status === "running";
export const isFinalStatus = (status) => status === "succeeded" || status === "failed" || status === "cancelled";

const UNKNOWN = { tone: "grey", icon: "help-circle" };

/** A state badge element: tone colour + icon (or spinner) + word. */
export function badge(meta, label, attrs = {}) {
  const m = meta || UNKNOWN;
  return h(
    "span",
    { class: `kv-badge kv-tone-${m.tone}`, ...attrs },
    m.spin ? spinner() : icon(m.icon),
    h("span", { class: "kv-badge-text" }, label || m.label || "Unknown"),
  );
}

export function hostStateBadge(state, label) {
  return badge(HOST_STATES[state], label || HOST_STATES[state]?.label || state, {
    dataset: { field: "state", state },
  });
}

/** A VM's state badge; `reason` (libvirt's state reason) goes in the title, as the template does. */
export function vmStateBadge(state, label, reason) {
  const meta = VM_STATES[state];
  const text = label || meta?.label || state;
  const title = reason ? `${text}: ${reason}` : meta?.short ? text : null;
  const el = badge(meta, meta?.short || text, { dataset: { field: "state", state }, title });
  if (meta?.dashed) el.classList.add("kv-badge-gone");
  return el;
}

export function opStatusBadge(status) {
  return badge(OP_STATUSES[status], OP_STATUSES[status]?.label || status, {
    dataset: { field: "status", status },
  });
}

/** Bring a .progress[data-field="progress"] element in line with an operation. */
export function updateProgress(el, op) {
  const bar = el.querySelector(".progress-bar");
  if (!bar) return;
  const tone = OP_STATUSES[op.status]?.tone || "grey";
  const known = op.progress !== null && op.progress !== undefined;
  const active = isActiveStatus(op.status);
  let width = 100;
  if (op.status !== "succeeded" && known) width = Math.max(0, Math.min(100, Number(op.progress)));
  else if (active && !known) width = 0; // the indeterminate animation shows instead
  bar.className = `progress-bar kv-bg-${tone}`;
  if (active && !known) bar.classList.add("progress-bar-indeterminate");
  bar.style.width = `${width}%`;
  el.dataset.status = op.status;
  if (known) el.setAttribute("aria-valuenow", String(op.progress));
  else el.removeAttribute("aria-valuenow");
}

export function progressBar(op) {
  const el = h(
    "span",
    {
      class: "progress kv-progress",
      role: "progressbar",
      "aria-label": `Progress of operation ${op.id}`,
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      dataset: { field: "progress" },
    },
    h("span", { class: "progress-bar" }),
  );
  updateProgress(el, op);
  return el;
}

export function progressText(op) {
  if (op.status === "succeeded") return "100%";
  if (op.progress === null || op.progress === undefined) return isActiveStatus(op.status) ? "…" : "";
  return `${op.progress}%`;
}

/** "KVM" with hardware virtualization, "TCG only" with QEMU emulation alone (as partials/virt_badge.html). */
export function virtTypes(types) {
  const wrap = h("span", { dataset: { field: "virt_types" } });
  if (!types || !types.length) {
    wrap.append(h("span", { class: "kv-missing" }, "not reported"));
  } else if (types.includes("kvm")) {
    wrap.append(
      h("span", { class: "kv-chip kv-chip-kvm", title: "KVM: guests run on the CPU through the kvm kernel module" }, icon("bolt"), "KVM"),
    );
  } else if (types.includes("qemu")) {
    wrap.append(h("span", { class: "kv-chip kv-chip-tcg", title: "QEMU/TCG: software emulation, slower" }, icon("cpu"), "TCG only"));
  } else {
    wrap.append(...types.map((t) => h("span", { class: "kv-chip" }, t)));
  }
  return wrap;
}
