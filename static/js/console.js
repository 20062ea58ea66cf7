// The graphical console: our own page around noVNC's RFB (static/vendor/novnc/core/rfb.js).
//
//   [data-console]        a console with its toolbar (templates/consoles/screen.html): the full-window
//                         page, or the VM page's Console tab ([data-embedded]: view-only until
//                         "Take control", connected only while it can be seen).
//   [data-console-thumb]  the Overview's thumbnail: a scaled, view-only screen, connected only while seen.
//
// No token is ever in the page: right before each connect we POST for a fresh single-use one
// (consoles:token), then open ws(s)://<this host><websocket_url>. The proxy enforces view-only too.
// The element's data-phase says where it is: connecting, connected, off, starting, lost, idle.
import { $, $$ } from "./dom.js";
import { csrfFetch } from "./http.js";
import { onEvents } from "./realtime.js";
import { vmStateBadge } from "./states.js";
import { toast } from "./toasts.js";

const NOVNC = "../vendor/novnc/core";
// States in which the guest has a screen to show (consoles/targets.py RUNNING).
const HAS_SCREEN = new Set(["running", "paused", "blocked", "pmsuspended", "shutdown"]);
const RETRY_DELAYS = [1000, 2000, 4000, 8000, 15000, 30000];
const MAX_PASTE = 4096;
// On a US keyboard these need Shift; the guest sees the same keys a person would press.
const SHIFTED = /[A-Z~!@#$%^&*()_+{}|:"<>?]/;

let novnc = null;
/** noVNC's modules, loaded the first time a console connects. */
function loadNoVNC() {
  novnc ||= Promise.all([
    import(`${NOVNC}/rfb.js`),
    import(`${NOVNC}/input/keysym.js`),
    import(`${NOVNC}/input/keysymdef.js`),
  ]).then(([rfb, keysym, keysymdef]) => ({ RFB: rfb.default, KeyTable: keysym.default, keysyms: keysymdef.default }));
  return novnc;
}

/** A fresh ticket: {kind: "ticket", token, websocket_url, view_only} or why there is none. */
async function fetchTicket(url, viewOnly) {
  const body = new URLSearchParams();
  if (viewOnly) body.set("view_only", "1");
  let response;
  try {
    response = await csrfFetch(url, { method: "POST", body, headers: { Accept: "application/json" } });
  } catch {
    return { kind: "retry", message: "The server cannot be reached." };
  }
  const type = response.headers.get("content-type") || "";
  if (!type.includes("application/json")) {
    // login_required sent us to the sign-in page: the session has ended
    return { kind: "final", message: "Your session has ended: sign in again to see the console." };
  }
  const data = await response.json().catch(() => ({}));
  if (response.ok) return { kind: "ticket", ...data };
  const message = data.error?.message || `The server answered ${response.status}.`;
  if (response.status === 409) {
    const state = data.error?.details?.state || "";
    // running but no VNC port yet: a moment later there is one
    return HAS_SCREEN.has(state) ? { kind: "retry", message, state } : { kind: "off", message, state };
  }
  if (response.status === 404 || response.status === 403) return { kind: "final", message };
  return { kind: "retry", message };
}

function websocketUrl(path) {
  const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${window.location.host}${path}`;
}

/** Whether the element is on screen: its tab is open and the browser tab is in front. */
function isShown(el) {
  return document.visibilityState === "visible" && el.getClientRects().length > 0;
}

function stamp() {
  const d = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

/** One connection to one VM's screen, with reconnects; the UI around it subscribes through onPhase. */
class Screen {
  constructor(el, { tokenUrl, screen, viewOnly, scale = true, onPhase = () => {}, onConnected = () => {} }) {
    this.el = el;
    this.tokenUrl = tokenUrl;
    this.screen = screen;
    this.wantViewOnly = viewOnly;
    this.viewOnly = viewOnly;
    this.scale = scale;
    this.onPhase = onPhase;
    this.onConnected = onConnected;
    this.rfb = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.generation = 0;
    this.phase = "idle";
  }

  setPhase(phase, message = "") {
    this.phase = phase;
    this.el.dataset.phase = phase;
    this.onPhase(phase, message);
  }

  /** Drop the current connection (if any) without calling it lost. */
  stop(phase = "idle", message = "") {
    this.generation += 1;
    window.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const rfb = this.rfb;
    this.rfb = null;
    if (rfb) {
      try {
        rfb.disconnect();
      } catch {
        // already closed
      }
    }
    this.setPhase(phase, message);
  }

  async connect() {
    this.stop("connecting");
    const generation = this.generation;
    const [{ RFB }, ticket] = await Promise.all([loadNoVNC(), fetchTicket(this.tokenUrl, this.wantViewOnly)]);
    if (generation !== this.generation) return; // stopped or restarted meanwhile
    if (ticket.kind === "off") {
      this.setPhase("off", ticket.message);
      return;
    }
    if (ticket.kind !== "ticket") {
      this.lost(ticket.message, ticket.kind === "retry");
      return;
    }
    this.viewOnly = !!ticket.view_only;
    let connected = false;
    const rfb = new RFB(this.screen, websocketUrl(ticket.websocket_url), { shared: true });
    this.rfb = rfb;
    rfb.viewOnly = this.viewOnly;
    rfb.scaleViewport = this.scale;
    rfb.resizeSession = false;
    rfb.background = "#0b0d10";
    rfb.addEventListener("connect", () => {
      if (generation !== this.generation) return;
      connected = true;
      this.attempt = 0;
      this.setPhase("connected");
      this.onConnected(rfb);
    });
    rfb.addEventListener("disconnect", (event) => {
      if (generation !== this.generation) return;
      this.rfb = null;
      const why = connected
        ? "The guest's screen closed: it may have shut down, or the network dropped."
        : "The console proxy did not let this connection through.";
      this.lost(event.detail?.clean && connected ? "The console was closed." : why, true);
    });
    rfb.addEventListener("securityfailure", (event) => {
      if (generation !== this.generation) return;
      this.lost(`The guest's VNC server refused: ${event.detail?.reason || "security failure"}.`, false);
    });
    rfb.addEventListener("credentialsrequired", () => {
      if (generation !== this.generation) return;
      this.stop("lost", "This VNC display asks for a password; kvmweb's consoles connect without one.");
    });
  }

  /** Lost: try again with a fresh token after a while (when retry), or wait for the user. */
  lost(message, retry) {
    window.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (!retry || this.attempt >= RETRY_DELAYS.length) {
      this.setPhase("lost", message);
      return;
    }
    const delay = RETRY_DELAYS[this.attempt];
    this.attempt += 1;
    this.setPhase("lost", `${message} Trying again in ${Math.round(delay / 1000)} s…`);
    const generation = this.generation;
    this.retryTimer = window.setTimeout(() => {
      if (generation === this.generation) this.connect();
    }, delay);
  }

  setScale(scale) {
    this.scale = scale;
    if (this.rfb) this.rfb.scaleViewport = scale;
  }
}

// ------------------------------------------------------------------ the console with its toolbar

function initConsole(root) {
  const embedded = root.hasAttribute("data-embedded");
  const uuid = root.dataset.vm;
  const name = root.dataset.name;
  const mayType = root.dataset.mayType === "1";
  const overlay = $("[data-console-overlay]", root);
  const status = $("[data-console-status]", root);
  const statusText = $("[data-console-status-text]", root);
  const inputTools = $("[data-console-input]", root);
  const viewOnlyBadge = $("[data-console-viewonly]", root);
  const controlButton = $("[data-console-control]", root);
  const scaleButton = $("[data-console-scale]", root);
  const startForm = $("[data-console-start]", root);
  const storedScale = window.localStorage?.getItem("kvmweb.console.scale");
  const STATUS = {
    connecting: "Connecting…",
    connected: "Connected",
    off: "Not running",
    starting: "Starting…",
    lost: "Disconnected",
    idle: "Not connected",
  };

  const view = new Screen(root, {
    tokenUrl: root.dataset.tokenUrl,
    screen: $("[data-console-screen]", root),
    viewOnly: root.dataset.viewOnly === "1",
    scale: embedded || storedScale !== "1:1",
    onPhase: (phase, message) => {
      overlay.dataset.phase = phase;
      overlay.hidden = phase === "connected";
      for (const card of $$("[data-when]", overlay)) card.hidden = card.dataset.when !== phase;
      status.dataset.phase = phase;
      statusText.textContent = phase === "connected" && view.viewOnly ? "Watching" : STATUS[phase] || phase;
      if (phase === "lost") $("[data-console-lost-text]", overlay).textContent = message;
      if (phase === "off") {
        const state = root.dataset.state;
        const off = state === "shutoff" || state === "crashed" || !state;
        const words = { shutoff: "is shut off", crashed: "has crashed" };
        $("[data-console-off-title]", overlay).textContent = `${name} ${off ? words[state] || "is not running" : "has no screen to show"}`;
        // the server's reason says more when the VM runs but has no display it can reach
        $("[data-console-off-text]", overlay).textContent = off ? "Its screen shows here once it runs." : message;
        if (startForm) startForm.hidden = !["shutoff", "crashed"].includes(state);
      }
      showInputTools();
    },
    onConnected: (rfb) => {
      if (!embedded && !view.viewOnly) rfb.focus();
    },
  });

  function showInputTools() {
    const typing = view.phase === "connected" && !view.viewOnly;
    if (inputTools) {
      inputTools.hidden = view.viewOnly;
      for (const b of $$("button", inputTools)) b.disabled = !typing;
      for (const s of $$("summary", inputTools)) s.classList.toggle("disabled", !typing);
    }
    if (viewOnlyBadge) viewOnlyBadge.hidden = !view.viewOnly;
    if (controlButton) {
      controlButton.setAttribute("aria-pressed", String(!view.wantViewOnly));
      controlButton.classList.toggle("active", !view.wantViewOnly);
    }
  }

  // -- toolbar ------------------------------------------------------------------------------
  async function sendKeys(steps) {
    const rfb = view.rfb;
    if (!rfb || view.viewOnly) return;
    const { KeyTable } = await loadNoVNC();
    for (const [key, code, down] of steps) rfb.sendKey(KeyTable[key], code, down);
    rfb.focus();
  }

  $("[data-console-cad]", root)?.addEventListener("click", () => {
    view.rfb?.sendCtrlAltDel();
    view.rfb?.focus();
  });
  for (const button of $$("[data-console-key]", root)) {
    button.addEventListener("click", () => {
      const key = button.dataset.consoleKey; // Tab, Escape, F1..F12
      const sym = `XK_${key}`;
      if (button.hasAttribute("data-console-ctrl-alt")) {
        sendKeys([
          ["XK_Control_L", "ControlLeft", true],
          ["XK_Alt_L", "AltLeft", true],
          [sym, key, true],
          [sym, key, false],
          ["XK_Alt_L", "AltLeft", false],
          ["XK_Control_L", "ControlLeft", false],
        ]);
      } else {
        sendKeys([
          [sym, key, true],
          [sym, key, false],
        ]);
      }
    });
  }

  const pasteDialog = $("[data-console-paste]", root);
  const pasteText = $("[data-console-paste-text]", root);
  $("[data-console-paste-open]", root)?.addEventListener("click", () => {
    if (!pasteDialog) return;
    pasteDialog.returnValue = "";
    pasteDialog.showModal();
    pasteText.focus();
  });
  pasteDialog?.addEventListener("close", async () => {
    if (pasteDialog.returnValue !== "type") return;
    const text = pasteText.value.slice(0, MAX_PASTE);
    pasteText.value = "";
    const rfb = view.rfb;
    if (!rfb || view.viewOnly || !text) return;
    const { KeyTable, keysyms } = await loadNoVNC();
    typeText(rfb, text, KeyTable, keysyms);
    rfb.focus();
  });

  scaleButton?.addEventListener("click", () => {
    const scale = !view.scale;
    view.setScale(scale);
    root.classList.toggle("kv-console-1to1", !scale);
    scaleButton.setAttribute("aria-pressed", String(scale));
    scaleButton.setAttribute("aria-label", scale ? "Scale to fit" : "Show 1:1");
    scaleButton.title = scale ? "Scaled to fit the window: click for 1:1" : "Shown 1:1: click to scale to fit the window";
    $(".ti", scaleButton).className = `ti ti-${scale ? "arrows-minimize" : "arrows-maximize"}`;
    window.localStorage?.setItem("kvmweb.console.scale", scale ? "fit" : "1:1");
  });
  if (scaleButton && !view.scale) {
    view.scale = true;
    scaleButton.click();
  }

  $("[data-console-shot]", root)?.addEventListener("click", () => {
    const rfb = view.rfb;
    if (!rfb || view.phase !== "connected") {
      toast({ tone: "amber", text: "Connect to the console first: there is no screen to save." });
      return;
    }
    rfb.toBlob((blob) => {
      if (!blob) return;
      const url = URL.createObjectURL(blob);
      const link = Object.assign(document.createElement("a"), { href: url, download: `${name}-${stamp()}.png` });
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 0);
    }, "image/png");
  });

  const fullscreenButton = $("[data-console-fullscreen]", root);
  fullscreenButton?.addEventListener("click", () => {
    if (document.fullscreenElement) document.exitFullscreen();
    else root.requestFullscreen?.().catch(() => toast({ tone: "amber", text: "This browser did not allow full screen." }));
  });
  document.addEventListener("fullscreenchange", () => {
    const full = document.fullscreenElement === root;
    root.classList.toggle("kv-console-full", full);
    if (!fullscreenButton) return;
    fullscreenButton.setAttribute("aria-label", full ? "Leave full screen" : "Full screen");
    fullscreenButton.title = full ? "Leave full screen" : "Full screen";
    $(".ti", fullscreenButton).className = `ti ti-${full ? "minimize" : "maximize"}`;
  });

  for (const button of $$("[data-console-reconnect]", root)) {
    button.addEventListener("click", () => {
      view.attempt = 0;
      view.connect();
    });
  }

  controlButton?.addEventListener("click", () => {
    view.wantViewOnly = !view.wantViewOnly;
    view.attempt = 0;
    view.connect();
  });

  const windowButton = $("[data-console-window]", root);
  windowButton?.addEventListener("click", (event) => {
    const url = root.dataset.pageUrl;
    const opened = window.open(url, `kvmweb-console-${uuid}`, "popup,width=1100,height=860");
    if (opened) {
      event.preventDefault();
      if (embedded) view.stop("idle"); // one console for this VM on this screen is enough
    } else if (windowButton.tagName !== "A") {
      window.location.assign(url); // popups blocked: open it here
    }
  });

  // -- starting the VM from here ----------------------------------------------------------
  startForm?.addEventListener("kv:form-done", (event) => {
    if (event.detail.ok && !event.detail.refused) view.setPhase("starting");
  });

  // -- live state of the VM -------------------------------------------------------------------
  onEvents({
    onMessage: (message) => {
      if (message.type !== "vm.state" || String(message.vm) !== uuid) return;
      root.dataset.state = message.state;
      const badge = $("[data-console-badge]", root);
      if (badge) badge.replaceChildren(vmStateBadge(message.state, message.state_label, message.reason));
      const waiting = ["off", "starting", "lost"].includes(view.phase);
      if (HAS_SCREEN.has(message.state) && waiting && shouldConnect()) {
        view.attempt = 0;
        view.connect();
      } else if (!HAS_SCREEN.has(message.state) && view.phase === "lost") {
        view.stop("off");
      }
    },
    onOpen: ({ reconnected }) => {
      // the VM may have started while the live updates were away
      if (reconnected && ["off", "starting"].includes(view.phase) && shouldConnect()) view.connect();
    },
  });

  // -- when to be connected -----------------------------------------------------------------
  const onlyWhenShown = root.dataset.connect === "visible";
  function shouldConnect() {
    return !onlyWhenShown || isShown(root);
  }
  function follow() {
    if (!onlyWhenShown) return;
    const shown = isShown(root);
    if (shown && view.phase === "idle") view.connect();
    else if (!shown && view.phase !== "idle") view.stop("idle");
  }
  if (onlyWhenShown) {
    document.addEventListener("shown.bs.tab", follow);
    document.addEventListener("hidden.bs.tab", follow);
    document.addEventListener("visibilitychange", follow);
    follow();
  } else {
    view.connect();
  }
  window.addEventListener("pagehide", () => view.stop("idle"));
}

/** Type `text` into the guest key by key: a keysym per character, Shift where a US keyboard needs it. */
function typeText(rfb, text, KeyTable, keysyms) {
  for (const char of text.replace(/\r\n?/g, "\n")) {
    let sym;
    if (char === "\n") sym = KeyTable.XK_Return;
    else if (char === "\t") sym = KeyTable.XK_Tab;
    else sym = keysyms.lookup(char.codePointAt(0));
    if (!sym) continue;
    const shift = SHIFTED.test(char);
    if (shift) rfb.sendKey(KeyTable.XK_Shift_L, "ShiftLeft", true);
    rfb.sendKey(sym, null, true);
    rfb.sendKey(sym, null, false);
    if (shift) rfb.sendKey(KeyTable.XK_Shift_L, "ShiftLeft", false);
  }
}

// ------------------------------------------------------------------ the Overview's thumbnail

function initThumbnail(el) {
  const uuid = el.dataset.vm;
  const note = $("[data-console-thumb-note]", el);
  const view = new Screen(el, {
    tokenUrl: el.dataset.tokenUrl,
    screen: $("[data-console-screen]", el),
    viewOnly: true,
    onPhase: (phase, message) => {
      note.hidden = phase === "connected";
      const state = el.dataset.state;
      if (phase === "connecting") note.textContent = "Connecting…";
      else if (phase === "off") note.textContent = state === "shutoff" ? "Shut off" : message || "No screen";
      else if (phase === "lost") note.textContent = "Disconnected";
      else if (phase === "idle") note.textContent = HAS_SCREEN.has(state) ? "Paused while hidden" : "Not running";
    },
  });
  el.addEventListener("click", (event) => {
    const tab = $('[data-bs-toggle="tab"][data-hash="console"]');
    const Tab = window.tabler?.Tab;
    if (!tab || !Tab) return;
    event.preventDefault();
    Tab.getOrCreateInstance(tab).show();
  });
  function follow() {
    const shown = isShown(el);
    if (shown && ["idle", "off"].includes(view.phase) && HAS_SCREEN.has(el.dataset.state)) view.connect();
    else if (!shown && view.phase !== "idle") view.stop("idle");
  }
  onEvents({
    onMessage: (message) => {
      if (message.type !== "vm.state" || String(message.vm) !== uuid) return;
      el.dataset.state = message.state;
      if (!HAS_SCREEN.has(message.state)) view.stop("off");
      else if (view.phase !== "connected" && view.phase !== "connecting" && isShown(el)) {
        view.attempt = 0;
        view.connect();
      }
    },
  });
  document.addEventListener("shown.bs.tab", follow);
  document.addEventListener("hidden.bs.tab", follow);
  document.addEventListener("visibilitychange", follow);
  window.addEventListener("pagehide", () => view.stop("idle"));
  if (!HAS_SCREEN.has(el.dataset.state)) view.setPhase("off");
  follow();
}

for (const el of $$("[data-console]")) initConsole(el);
for (const el of $$("[data-console-thumb]")) initThumbnail(el);
for (const link of $$("a[data-open-tab]:not([data-console-thumb])")) {
  link.addEventListener("click", (event) => {
    const tab = $(`[data-bs-toggle="tab"][data-hash="${CSS.escape(link.dataset.openTab)}"]`);
    const Tab = window.tabler?.Tab;
    if (!tab || !Tab) return;
    event.preventDefault();
    Tab.getOrCreateInstance(tab).show();
    tab.scrollIntoView({ block: "nearest" });
  });
}
