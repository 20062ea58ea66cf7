// fetch() with the CSRF token, and progressive enhancement for POST forms marked
// data-enhance="fetch": they are sent in the background and answered with a toast, and fall back to
// a normal submission if the request cannot be made. When the answer is in, the form receives a
// "kv:form-done" event, detail {ok, refused, messages, operation, submitter}.
import { $$, spinner } from "./dom.js";
import { adoptMessages, toast } from "./toasts.js";

export function getCookie(name) {
  for (const part of document.cookie ? document.cookie.split(";") : []) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

function csrfToken(form) {
  return getCookie("csrftoken") || form?.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
}

/** fetch() for same-origin requests; any non-GET carries X-CSRFToken from the csrftoken cookie. */
export function csrfFetch(url, options = {}, form = null) {
  const method = (options.method || "GET").toUpperCase();
  const headers = new Headers(options.headers || {});
  headers.set("X-Requested-With", "fetch");
  if (!["GET", "HEAD", "OPTIONS", "TRACE"].includes(method)) headers.set("X-CSRFToken", csrfToken(form));
  return fetch(url, { credentials: "same-origin", ...options, method, headers });
}

/** Called with the operation when a fetch-submitted form answers with {"operation": {...}}. */
let operationListener = () => {};
export function onOperationAccepted(fn) {
  operationListener = fn;
}

async function submitInBackground(form, submitter) {
  const button = submitter || form.querySelector("[type=submit]");
  const body = new FormData(form, submitter || undefined);
  const restore = busy(button);
  // a submit button's formaction (bulk actions: one form, one endpoint per button) wins over the form's
  const url = submitter?.hasAttribute("formaction") ? submitter.formAction : form.action;
  const outcome = { ok: false, refused: false, messages: [], operation: null, submitter };
  let response;
  try {
    response = await csrfFetch(
      url,
      { method: "POST", body, headers: { Accept: "application/json, text/html;q=0.9" } },
      form,
    );
  } catch {
    restore();
    HTMLFormElement.prototype.submit.call(form); // network trouble: let the browser try
    return;
  }
  try {
    const type = response.headers.get("content-type") || "";
    if (type.includes("application/json")) {
      const data = await response.json().catch(() => ({}));
      outcome.ok = response.ok;
      outcome.operation = data.operation || null;
      if (response.ok && data.operation) {
        operationListener(data.operation);
        const op = data.operation;
        toast({ tone: "blue", title: `${op.kind_label || op.kind} started`, text: op.target?.label || "" });
      } else if (response.ok) {
        toast({ tone: "green", text: data.message || "Done." });
      } else {
        toast({ tone: "red", title: "Not done", text: data.error?.message || `${response.status} ${response.statusText}` });
      }
    } else {
      const html = await response.text();
      const doc = new DOMParser().parseFromString(html, "text/html");
      const shown = adoptMessages(doc);
      outcome.ok = response.ok;
      // a refusal comes back as an error or warning message on the redirected page
      outcome.refused = !!doc.querySelector("#toasts [data-message].kv-toast-red, #toasts [data-message].kv-toast-amber");
      outcome.messages = [...doc.querySelectorAll("#toasts [data-message]")].map((el) => el.textContent.trim());
      if (!shown) {
        if (response.ok) toast({ tone: "blue", text: "Request sent." });
        else if (response.status === 403) toast({ tone: "red", title: "Not allowed", text: "You may not do this." });
        else toast({ tone: "red", title: "Not done", text: `The server answered ${response.status} ${response.statusText}.` });
      }
    }
  } finally {
    restore();
    // live.js does not carry an accepted form's fields into its re-rendered copy
    if (outcome.ok && !outcome.refused) form.dataset.sent = "1";
    // other modules (actions.js) follow what became of the request
    form.dispatchEvent(new CustomEvent("kv:form-done", { bubbles: true, detail: outcome }));
  }
}

function busy(button) {
  if (!button) return () => {};
  const wasDisabled = button.disabled;
  const spin = spinner();
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.prepend(spin);
  const icon = button.querySelector(".ti");
  if (icon) icon.hidden = true;
  return () => {
    button.disabled = wasDisabled;
    button.removeAttribute("aria-busy");
    spin.remove();
    if (icon) icon.hidden = false;
  };
}

export function enhanceForms(root = document) {
  for (const form of $$('form[data-enhance="fetch"]', root)) {
    if (form.dataset.enhanced) continue;
    form.dataset.enhanced = "1";
    form.addEventListener("submit", (event) => {
      if (!window.fetch || !window.DOMParser) return;
      event.preventDefault();
      submitInBackground(form, event.submitter);
    });
    form.addEventListener("input", () => delete form.dataset.sent); // filled in again: the user's once more
  }
  // Normal POST forms: one click, one request.
  for (const form of $$('form[method="post" i]:not([data-enhance])', root)) {
    if (form.dataset.once) continue;
    form.dataset.once = "1";
    form.addEventListener("submit", (event) => {
      const button = event.submitter;
      if (!button) return;
      window.setTimeout(() => {
        button.disabled = true;
        button.setAttribute("aria-busy", "true");
      }, 0);
    });
  }
}
