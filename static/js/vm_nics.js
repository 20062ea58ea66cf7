// Live IP addresses of VMs. The server reads them from libvirt (DHCP leases, or the guest agent where it
// answers), keeps them on the VM's row and pushes a change as
//   {"type": "vm.addresses", "v": 1, "vm": uuid, "host": 3,
//    "nics": [{"mac", "name", "source": "lease"|"agent", "addresses": [{"type", "address", "prefix"}]}]}
// Markup (templates/vms/nic_addresses.html renders the same on the server):
//   [data-vm-addresses="<uuid>"]      a VM's element; inside it (or on it):
//     [data-nic-addresses="<mac>"]    one NIC's addresses and their source
//     [data-vm-ips]                   every NIC's addresses (the Overview)
//     [data-vm-ipv4]                  the first IPv4 address of each NIC (the VM list; templates/vms/list_ipv4.html)
import { h, within, $$ } from "./dom.js";
import { onEvents } from "./realtime.js";

const SOURCES = {
  lease: ["DHCP lease", "From the DHCP lease libvirt's network handed out"],
  agent: ["guest agent", "Reported by the guest agent inside the VM"],
};

function none() {
  return h("span", { class: "kv-muted" }, "none known");
}

/** One NIC's addresses, then a chip naming where they come from. */
export function nicAddresses(nic) {
  const addresses = nic?.addresses || [];
  if (!addresses.length) return [none()];
  const parts = [];
  for (const a of addresses) {
    const text = a.prefix === null || a.prefix === undefined ? a.address : `${a.address}/${a.prefix}`;
    parts.push(h("span", { class: "kv-mono kv-ip" }, text), " ");
  }
  const [label, title] = SOURCES[nic.source] || SOURCES.lease;
  parts.push(h("span", { class: "kv-chip kv-ip-source", title }, label));
  return parts;
}

const LIST_SHOWN = 2; // IPv4 addresses a list row shows before "+N"

/** The first IPv4 address of each NIC, each once (vms/templatetags/vm_addresses.py: first_ipv4). */
export function firstIpv4(nics) {
  const found = [];
  for (const nic of nics) {
    const first = (nic.addresses || []).find((a) => a.type === "ipv4")?.address;
    if (first && !found.includes(first)) found.push(first);
  }
  return found;
}

function ipv4Summary(nics) {
  const ips = firstIpv4(nics);
  const parts = ips.slice(0, LIST_SHOWN).map((ip) => h("span", { class: "kv-mono kv-ip" }, ip));
  if (ips.length > LIST_SHOWN) parts.push(h("span", { class: "kv-muted", title: ips.join(", ") }, `+${ips.length - LIST_SHOWN}`));
  return parts;
}

export function applyAddresses(message) {
  const nics = new Map((message.nics || []).map((nic) => [String(nic.mac).toLowerCase(), nic]));
  for (const root of $$(`[data-vm-addresses="${CSS.escape(String(message.vm))}"]`)) {
    for (const cell of within(root, "[data-nic-addresses]")) {
      cell.replaceChildren(...nicAddresses(nics.get(cell.dataset.nicAddresses.toLowerCase())));
    }
    for (const cell of within(root, "[data-vm-ips]")) {
      const known = [...nics.values()].filter((nic) => (nic.addresses || []).length);
      cell.replaceChildren(...(known.length ? known.map((nic) => h("span", { class: "kv-ip-nic" }, ...nicAddresses(nic))) : [none()]));
    }
    for (const cell of within(root, "[data-vm-ipv4]")) cell.replaceChildren(...ipv4Summary(nics.values()));
  }
}

/** The add form offers the port groups of the chosen network only. */
function initPortgroups(root = document) {
  for (const form of within(root, "form[data-nic-add]")) {
    const network = form.querySelector("[data-nic-network]");
    const groups = form.querySelector("[data-nic-portgroup]");
    if (!network || !groups || form.dataset.nicReady) continue;
    form.dataset.nicReady = "1";
    const sync = () => {
      for (const option of groups.options) {
        if (!option.dataset.network) continue;
        option.hidden = option.disabled = option.dataset.network !== network.value;
        if (option.disabled && option.selected) groups.value = "";
      }
      groups.closest("label").hidden = ![...groups.options].some((option) => option.dataset.network && !option.disabled);
    };
    network.addEventListener("change", sync);
    sync();
  }
}

onEvents({
  onMessage(message) {
    if (message.type === "vm.addresses" && message.vm) applyAddresses(message);
  },
});
initPortgroups();
// A live region swapped in (after an operation) brings a fresh form.
new MutationObserver(() => initPortgroups()).observe(document.body, { childList: true, subtree: true });
