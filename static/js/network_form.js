// The "Define network" form (templates/networks/form.html): the mode chooser shows the fields of
// the chosen mode (elements with data-modes="nat route ...") and its one-sentence explanation, and
// hides the rest; hidden fields are disabled so they are not sent. Without JavaScript every field
// shows and the server ignores those that do not apply.
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
}
