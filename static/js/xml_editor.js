// The VM's XML editor (templates/vms/xml_edit.html): a text area with line numbers, a review of the
// changes as a server-rendered side-by-side diff, and Apply, which queues the define-xml action and
// follows its operation on the WebSocket. A refusal, from kvmweb's checks or from libvirt, is shown
// next to the line it concerns. The page never reloads: the text stays until the user leaves.
import { $ } from "./dom.js";
import { csrfFetch } from "./http.js";
import { applyOperation } from "./live.js";
import { onEvents } from "./realtime.js";
import { isFinalStatus } from "./states.js";

const root = $("[data-xml-editor]");
if (root) init(root);

function init(root) {
  const text = $("[data-xml-text]", root);
  const gutter = $("[data-xml-gutter]", root);
  const mark = $("[data-xml-mark]", root);
  const callout = $("[data-xml-callout]", root);
  const area = $(".kv-xml-area", root);
  const original = $("[data-xml-original]", root);
  const form = $("[data-xml-form]", root);
  const status = $("[data-xml-status]", root);
  const errorBox = $("[data-xml-error]", root);
  const editPane = $("[data-xml-edit-pane]", root);
  const reviewPane = $("[data-xml-review-pane]", root);
  const applyPane = $("[data-xml-apply-pane]", root);
  const opBox = $("[data-operation-id]", applyPane);
  let errorLine = null;
  let lineCount = 0;
  let applying = false;
  let applied = false;

  // -- line numbers -----------------------------------------------------------------------------

  function numberLines() {
    const count = text.value.split("\n").length;
    if (count !== lineCount) {
      lineCount = count;
      gutter.textContent = Array.from({ length: count }, (_, i) => i + 1).join("\n");
      area.style.setProperty("--kv-gutter-ch", String(Math.max(2, String(count).length)));
    }
    gutter.scrollTop = text.scrollTop;
    placeMark();
  }

  function lineHeight() {
    const style = getComputedStyle(text);
    const value = parseFloat(style.lineHeight);
    return Number.isFinite(value) ? value : parseFloat(style.fontSize) * 1.5;
  }

  /** Keep the error band and its message on the error line as the text scrolls. */
  function placeMark() {
    if (!errorLine) {
      mark.hidden = true;
      callout.hidden = true;
      return;
    }
    const lh = lineHeight();
    const padTop = parseFloat(getComputedStyle(text).paddingTop) || 0;
    const top = padTop + (errorLine - 1) * lh - text.scrollTop;
    const visible = top > -lh && top < text.clientHeight;
    mark.hidden = !visible;
    callout.hidden = !visible || !callout.textContent;
    mark.style.top = `${top}px`;
    mark.style.height = `${lh}px`;
    callout.style.top = `${top + lh + 2}px`;
  }

  function goToLine(line) {
    const lines = text.value.split("\n");
    const at = lines.slice(0, line - 1).reduce((sum, l) => sum + l.length + 1, 0);
    text.focus({ preventScroll: true });
    text.setSelectionRange(at, at + (lines[line - 1] || "").length);
    text.scrollTop = Math.max(0, (line - 1) * lineHeight() - text.clientHeight / 3);
    text.scrollLeft = 0;
    numberLines();
    area.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  // -- refusals ---------------------------------------------------------------------------------

  /** What to say at the line: libvirt's complaint without its summary and the schema file's name. */
  function atLine(message) {
    const inner = /^[^(]*\(([\s\S]*)\)\s*$/.exec(message);
    const lines = (inner ? inner[1] : message)
      .split("\n")
      .map((l) => l.replace(/^XML document failed to validate against schema:\s*/, "").trim())
      .filter((l) => l && !/^Unable to validate doc against /.test(l) && !/failed to validate content$/.test(l));
    return lines.join(" ") || message;
  }

  function showError({ title = "Not accepted", message = "", line = null, raw = "" } = {}) {
    errorBox.hidden = false;
    $("[data-xml-error-title]", errorBox).textContent = title;
    $("[data-xml-error-text]", errorBox).textContent = message;
    const goto = $("[data-xml-goto]", errorBox);
    goto.hidden = !line;
    $("[data-xml-error-line]", errorBox).textContent = line ? String(line) : "";
    const rawBox = $("[data-xml-raw]", errorBox);
    rawBox.hidden = !raw;
    $("pre", rawBox).textContent = raw || "";
    errorLine = line || null;
    callout.textContent = line ? `Line ${line}: ${atLine(message)}` : "";
    area.classList.toggle("has-error", !!line);
    showPane("edit");
    if (line) goToLine(line);
    else errorBox.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  function clearError() {
    errorBox.hidden = true;
    errorLine = null;
    callout.textContent = "";
    area.classList.remove("has-error");
    placeMark();
  }

  function showPane(which) {
    editPane.hidden = which !== "edit";
    reviewPane.hidden = which !== "review";
    applyPane.hidden = which !== "apply";
    if (which === "edit") window.requestAnimationFrame(numberLines);
  }

  // -- loading the definition -------------------------------------------------------------------

  // The VM editor's source is kvmweb's copy, kept current by the events process; the network
  // editor's still reads the host. So the words say neither.
  async function load() {
    status.textContent = "Loading the definition…";
    text.readOnly = true;
    try {
      const response = await csrfFetch(root.dataset.sourceUrl, { headers: { Accept: "application/json" } });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        status.textContent = "Not loaded";
        showError({
          title: "The definition could not be loaded",
          message: data.error?.message || `The server answered ${response.status}.`,
          raw: data.error?.details?.raw || "",
        });
        return;
      }
      text.value = data.xml;
      original.value = data.xml;
      applied = false;
      clearError();
      const now = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      status.textContent = `Loaded at ${now}`;
    } catch {
      status.textContent = "Not loaded";
      showError({ title: "The definition could not be loaded", message: "The request failed: is the connection down?" });
    } finally {
      text.readOnly = false;
      text.placeholder = "";
      numberLines();
    }
  }

  const dirty = () => !applied && text.value !== original.value;

  // -- review -----------------------------------------------------------------------------------

  async function review(event) {
    event.preventDefault();
    const button = $("[data-xml-review-button]", form);
    button.disabled = true;
    try {
      const response = await csrfFetch(form.action, { method: "POST", body: new FormData(form) }, form);
      const type = response.headers.get("content-type") || "";
      if (type.includes("application/json")) {
        const data = await response.json().catch(() => ({}));
        const error = data.error || {};
        showError({ message: error.message || `The server answered ${response.status}.`, line: error.details?.line || null });
        return;
      }
      if (!response.ok) {
        showError({ message: `The server answered ${response.status} ${response.statusText}.` });
        return;
      }
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const section = doc.querySelector("[data-xml-review]");
      if (!section) {
        showError({ message: "The server sent something unexpected; try again." });
        return;
      }
      clearError();
      reviewPane.replaceChildren(document.importNode(section, true));
      $("[data-xml-back]", reviewPane)?.addEventListener("submit", (e) => {
        e.preventDefault();
        showPane("edit");
        text.focus();
      });
      $("[data-xml-apply]", reviewPane)?.addEventListener("submit", apply);
      showPane("review");
      reviewPane.scrollIntoView({ block: "start", behavior: "smooth" });
    } catch {
      showError({ message: "The request failed: is the connection down?" });
    } finally {
      button.disabled = false;
    }
  }

  // -- apply and follow the operation -----------------------------------------------------------

  let opId = null;
  const early = new Map(); // messages that arrive before the POST answers
  let stopListening = () => {};

  function follow(op) {
    if (!op || op.id !== opId) return;
    applyOperation(op); // the drawer, the fields of the progress card, the toast at the end
    if (!isFinalStatus(op.status)) return;
    stopListening();
    applying = false;
    if (op.status === "succeeded") {
      applied = true;
      original.value = text.value;
      $("[data-xml-done]", applyPane).hidden = false;
      $("[data-xml-done-note]", applyPane).textContent = root.dataset.doneNote || "";
      $("[data-xml-done] .btn-primary", applyPane)?.focus();
    } else {
      failed(op);
    }
  }

  async function failed(op) {
    const match = /\s*\(line (\d+)\)\s*$/.exec(op.error || "");
    const message = match ? op.error.slice(0, match.index) : op.error || "It failed without giving a reason.";
    let raw = "";
    try {
      const response = await csrfFetch(root.dataset.operationUrl.replace("987654321", String(op.id)));
      if (response.ok) raw = (await response.json()).error_detail || "";
    } catch {
      /* the message alone still says what went wrong */
    }
    const title = op.status === "failed" ? "Not applied: nothing was changed" : "Not applied";
    // The reviewed diff is spent: the next Apply must come from a fresh review of the edited text.
    reviewPane.replaceChildren();
    showError({ title, message, line: match ? Number(match[1]) : null, raw });
  }

  async function apply(event) {
    event.preventDefault();
    if (applying) return;
    applying = true;
    const button = event.submitter || $("button[type=submit]", event.target);
    if (button) button.disabled = true;
    early.clear();
    opId = null;
    stopListening = onEvents({
      onMessage: (message) => {
        if (message.type !== "operation" || !message.operation) return;
        if (opId === null) early.set(message.operation.id, message.operation);
        else follow(message.operation);
      },
      onOpen: ({ reconnected }) => {
        if (reconnected && opId !== null) catchUp();
      },
    });
    let response;
    let data = {};
    try {
      response = await csrfFetch(root.dataset.applyUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ xml: text.value }),
      });
      data = await response.json().catch(() => ({}));
    } catch {
      stopListening();
      applying = false;
      if (button) button.disabled = false;
      showError({ message: "The request failed: is the connection down? Nothing was applied." });
      return;
    }
    if (response.status !== 202 || !data.operation) {
      stopListening();
      applying = false;
      if (button) button.disabled = false;
      const error = data.error || {};
      showError({ message: error.message || `The server answered ${response.status}.`, line: error.details?.line || null });
      return;
    }
    const op = data.operation;
    opId = op.id;
    opBox.dataset.operationId = String(op.id);
    $("[data-xml-done]", applyPane).hidden = true;
    const link = $("[data-xml-op-link]", applyPane);
    if (link) link.href = (document.body.dataset.urlOperation || "").replace("987654321", String(op.id));
    showPane("apply");
    applyPane.scrollIntoView({ block: "start", behavior: "smooth" });
    follow(op);
    const newer = early.get(op.id);
    early.clear();
    if (newer) follow(newer);
  }

  /** After a reconnect the socket may have missed the end: ask once. */
  async function catchUp() {
    try {
      const response = await csrfFetch(root.dataset.operationUrl.replace("987654321", String(opId)));
      if (response.ok) follow({ ...(await response.json()), kind_label: "Apply XML" });
    } catch {
      /* the next reconnect tries again */
    }
  }

  // -- wiring -----------------------------------------------------------------------------------

  text.addEventListener("input", () => {
    if (errorLine) {
      errorLine = null;
      area.classList.remove("has-error");
    }
    numberLines();
  });
  text.addEventListener("scroll", () => {
    gutter.scrollTop = text.scrollTop;
    placeMark();
  });
  window.addEventListener("resize", placeMark);
  form.addEventListener("submit", review);
  $("[data-xml-goto]", errorBox).addEventListener("click", () => errorLine && goToLine(errorLine));
  $("[data-xml-reload]", root).addEventListener("click", () => {
    if (dirty() && !window.confirm("Discard your edits and load the definition again?")) return;
    load();
  });
  $("[data-xml-again]", applyPane)?.addEventListener("click", () => {
    showPane("edit");
    load();
  });
  window.addEventListener("beforeunload", (event) => {
    if (dirty() || applying) event.preventDefault();
  });

  // A server-side refusal (the page came back from the review without the script's help).
  const serverLine = Number(area.dataset.errorLine || 0);
  if (text.value) {
    numberLines();
    if (serverLine) {
      errorLine = serverLine;
      callout.textContent = `Line ${serverLine}: ${atLine($("[data-xml-error-text]", errorBox).textContent)}`;
      area.classList.add("has-error");
      goToLine(serverLine);
    }
  } else {
    numberLines();
    load();
  }
}
