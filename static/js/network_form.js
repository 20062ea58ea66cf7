// The "Define network" form (templates/networks/form.html): the mode chooser shows the fields of
// the chosen mode (elements with data-modes="nat route ...") and its one-sentence explanation, and
// hides the rest; hidden fields are disabled so they are not sent. Without JavaScript every field
// shows and the server ignores those that do not apply.
// Portgroups (tbody[data-portgroup]) open one at a time: the next shows once the one before has a name,
// and a group's bandwidth row ([data-portgroup-bandwidth]) once it has a name. One with values always shows.
import { $, $$ } from "./dom.js";

// The bridge field names a new bridge (own-bridge modes) or one the host has.
const BRIDGE_EXAMPLES = { bridge: "br0", openvswitch: "ovsbr0" };

const form = $("[data-network-form]");
if (form) {
  const show = () => {
    const mode = $('input[name="mode"]:checked', form)?.value || "nat";
    for (const el of $$("[data-modes]", form)) {
      const on = el.dataset.modes.split(/\s+/).includes(mode);
      el.hidden = !on;
      for (const input of $$("input, select, textarea", el)) input.disabled = !on;
    }
    const bridge = $('input[name="bridge_name"]', form);
    if (bridge) bridge.placeholder = BRIDGE_EXAMPLES[mode] || "virbr77";
  };
  for (const radio of $$('input[name="mode"]', form)) radio.addEventListener("change", show);
  show();

  const groups = $$("tbody[data-portgroup]", form);
  const filled = (el) => $$('input[type="text"]', el).some((input) => input.value.trim());
  const named = (group) => Boolean($('input[name$="_name"]', group)?.value.trim());
  const disclose = () => {
    groups.forEach((group, index) => {
      group.hidden = index > 0 && !named(groups[index - 1]) && !filled(group);
      const bandwidth = $("[data-portgroup-bandwidth]", group);
      if (bandwidth) bandwidth.hidden = !named(group) && !filled(bandwidth);
    });
  };
  form.addEventListener("input", disclose);
  disclose();
}
