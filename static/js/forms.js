// Small form behaviours:
//   input[data-confirm-name="lab"][data-confirm-for="#delete-button"]  the button is enabled only
//       once the exact name is typed (the server checks it again)
//   button[data-fill="qemu:///system"][data-fill-target="#id_uri"]     fills in an example
//   input[data-uri-hints]   highlights [data-uri-scheme="ssh"|"tls"] fields that the URI's transport uses
//   form[data-autosubmit]   submits when one of its <select>s changes (GET filter forms)
import { $, $$ } from "./dom.js";

export function initForms(root = document) {
  // A form sent back with errors: start at the first field to correct.
  const invalid = root.querySelector?.("form .is-invalid");
  if (invalid && root === document) invalid.focus();

  for (const field of $$("input[data-confirm-name]", root)) {
    const button = $(field.dataset.confirmFor);
    if (!button) continue;
    const check = () => {
      const ok = field.value.trim() === field.dataset.confirmName;
      button.disabled = !ok;
      button.setAttribute("aria-disabled", String(!ok));
    };
    field.addEventListener("input", check);
    check();
  }

  for (const button of $$("button[data-fill]", root)) {
    button.addEventListener("click", () => {
      const target = $(button.dataset.fillTarget);
      if (!target) return;
      target.value = button.dataset.fill;
      target.dispatchEvent(new Event("input", { bubbles: true }));
      target.focus();
      const at = target.value.indexOf(button.dataset.select || "\u0000");
      if (at >= 0) target.setSelectionRange(at, at + button.dataset.select.length);
    });
  }

  for (const uri of $$("input[data-uri-hints]", root)) {
    const update = () => {
      const scheme = (uri.value.match(/^[a-z0-9]+\+([a-z0-9]+):/i) || [])[1]?.toLowerCase() || "";
      for (const el of $$("[data-uri-scheme]", root)) el.classList.toggle("kv-field-active", el.dataset.uriScheme === scheme);
    };
    uri.addEventListener("input", update);
    update();
  }

  for (const form of $$("form[data-autosubmit]", root)) {
    for (const select of $$("select", form)) select.addEventListener("change", () => form.requestSubmit());
  }
}

// Coming back with the Back button restores the page from cache: undo the "sending" state.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  for (const button of $$("button[aria-busy=true]")) {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
});
