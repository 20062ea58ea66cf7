// A network's DHCP panel, live: its leases table and its reservations are live regions (live.js)
// fetched again when a message says they changed:
//   {"type": "network.leases", "network": id, "host": id, "leases": [...]}
//       the server's lease refresh found a different lease list: regions watching "leases:<id>"
//   {"type": "network.state", "network": {"id": ...}}
//       the network's row changed (a reservation was applied): regions watching "dhcp:<id>"
// libvirt has no lease event, so the server reads the leases every few seconds; this page never polls.
// Each reservation's "Edit" opens its form in the row below it (delegated: rows are swapped live).
import { touch } from "./live.js";
import { onEvents } from "./realtime.js";

onEvents({
  onMessage(message) {
    if (!message) return;
    if (message.type === "network.leases" && message.network !== undefined) touch([`leases:${message.network}`]);
    else if (message.type === "network.state" && message.network?.id !== undefined) touch([`dhcp:${message.network.id}`]);
  },
});

document.addEventListener("click", (event) => {
  const toggle = event.target.closest("[data-reservation-edit], [data-reservation-edit-cancel]");
  if (!toggle) return;
  const row = document.getElementById(toggle.getAttribute("aria-controls"));
  if (!row) return;
  const open = toggle.hasAttribute("data-reservation-edit") && row.hidden;
  row.hidden = !open;
  const opener = document.querySelector(`[data-reservation-edit][aria-controls="${CSS.escape(row.id)}"]`);
  opener?.setAttribute("aria-expanded", String(open));
  if (open) row.querySelector("input[name=ip]")?.focus();
  else opener?.focus();
});
