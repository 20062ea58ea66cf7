// The serial console on the VM page (templates/consoles/serial_panel.html): xterm.js over the
// WebSocket /ws/vms/<uuid>/serial/ (consoles/consumers.py).
//
// Protocol: binary frames carry the terminal's bytes both ways, unencoded (no base64): the guest's
// output goes straight to term.write(Uint8Array), and typed keys leave as their UTF-8 bytes. JSON
// text frames carry control: serial.hello {role, may_type, writer_present}, serial.role,
// serial.unavailable {reason, message, may_force}, serial.closed {reason, message} and
// serial.error from the server; {"action": "take"} from the page. Only the writer's keys reach the
// guest; the server checks that for every frame, this page only mirrors it.
//
// The panel connects while it is shown (the Console tab) and lets go when hidden, because libvirt
// lets one client hold a guest's console. xterm.js and its fit addon are classic scripts loaded
// (deferred) just before this module: window.Terminal and window.FitAddon.

import { $, $$ } from "./dom.js";
import { onEvents } from "./realtime.js";

const RUNNING = new Set(["running", "paused", "blocked", "pmsuspended", "shutdown"]);
const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_REVOKED = 4403;
const CLOSE_NOT_FOUND = 4404;
const CLOSE_UNAVAILABLE = 4409;
const CLOSE_ENDED = 4410;
const RETRIES = 4; // unexpected drops (network, server restart), with backoff 1, 2, 4, 8 s
const encoder = new TextEncoder();

function isShown(el) {
  return document.visibilityState === "visible" && el.getClientRects().length > 0;
}

function cssVar(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

class SerialPanel {
  constructor(root) {
    this.root = root;
    this.uuid = root.dataset.vm;
    this.name = root.dataset.name;
    this.phase = "idle";
    this.role = null;
    this.mayType = false;
    this.socket = null;
    this.term = null;
    this.fit = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.unavailable = null; // the last serial.unavailable message
    this.closedWith = null; // the last serial.closed message
    this.status = $("[data-serial-status]", root);
    this.statusText = $("[data-serial-status-text]", root);
    this.roleChip = $("[data-serial-role]", root);
    this.takeButton = $("[data-serial-take]", root);
    this.forceButton = $("[data-serial-force]", root);
    this.overlay = $("[data-serial-overlay]", root);
    this.termEl = $("[data-serial-term]", root);

    for (const button of $$("[data-serial-reconnect]", root)) {
      button.addEventListener("click", () => {
        this.attempt = 0;
        this.connect();
      });
    }
    this.takeButton.addEventListener("click", () => this.sendControl({ action: "take" }));
    this.forceButton.addEventListener("click", () => {
      this.attempt = 0;
      this.connect({ force: true });
    });
    $("[data-serial-start]", root)?.addEventListener("kv:form-done", (event) => {
      if (event.detail.ok && !event.detail.refused) this.setPhase("starting");
    });
  }

  // -- the terminal ---------------------------------------------------------------------------
  ensureTerminal() {
    if (this.term || !window.Terminal) return this.term;
    this.term = new window.Terminal({
      convertEol: false,
      cursorBlink: true,
      fontFamily: cssVar("--tblr-font-monospace", "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"),
      fontSize: 14,
      lineHeight: 1.2,
      scrollback: 5000,
      theme: { background: "#0b0d10", foreground: "#e6e9ee", cursor: "#e6e9ee", selectionBackground: "#3a4a63" },
    });
    this.fit = new window.FitAddon.FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(this.termEl);
    this.term.onData((data) => this.sendKeys(encoder.encode(data)));
    // onBinary: bytes 0-255 that are not UTF-8 text (some mouse reports)
    this.term.onBinary((data) => this.sendKeys(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
    new ResizeObserver(() => this.refit()).observe(this.termEl);
    this.refit();
    return this.term;
  }

  refit() {
    if (!this.fit || !isShown(this.termEl)) return;
    try {
      this.fit.fit();
    } catch {
      // not laid out yet: the next resize fits it
    }
  }

  sendKeys(bytes) {
    if (this.role !== "writer" || !this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    this.socket.send(bytes);
  }

  sendControl(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  // -- the connection -----------------------------------------------------------------------------
  url(force) {
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${proto}//${window.location.host}${this.root.dataset.wsPath}${force ? "?force=1" : ""}`;
  }

  connect({ force = false } = {}) {
    this.stopSocket();
    if (!window.Terminal) {
      this.lost("The terminal could not load", "xterm.js is missing from /static/vendor/xterm/.");
      return;
    }
    this.ensureTerminal();
    this.unavailable = null;
    this.closedWith = null;
    this.setPhase("connecting");
    const socket = new WebSocket(this.url(force));
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      if (typeof event.data === "string") this.onControl(JSON.parse(event.data));
      else this.term.write(new Uint8Array(event.data));
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return; // replaced or stopped on purpose
      this.socket = null;
      this.onClose(event.code);
    });
  }

  stopSocket() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000);
  }

  stop(phase = "idle") {
    this.stopSocket();
    this.setRole(null, false, false);
    this.setPhase(phase);
  }

  onControl(message) {
    switch (message.type) {
      case "serial.hello":
        this.attempt = 0;
        this.term.reset();
        this.setRole(message.role, message.may_type, message.writer_present);
        this.refit();
        // Shown here only, never sent: the guest prints nothing until asked.
        this.term.write(`\x1b[2m[kvmweb] Connected to ${this.name}'s serial console. Press Enter for a prompt.\x1b[0m\r\n`);
        if (message.role === "writer") this.term.focus();
        break;
      case "serial.role":
        this.setRole(message.role, message.may_type, message.writer_present);
        if (message.role === "writer") this.term.focus();
        break;
      case "serial.unavailable":
        this.unavailable = message;
        break;
      case "serial.closed":
        this.closedWith = message;
        break;
      case "serial.error":
        this.term.write(`\r\n\x1b[33m[kvmweb] ${message.message}\x1b[0m\r\n`);
        break;
      default:
        break; // newer messages are ignored
    }
  }

  onClose(code) {
    this.setRole(null, false, false);
    if (code === CLOSE_UNAVAILABLE && this.unavailable) {
      const { reason, message, may_force: mayForce } = this.unavailable;
      if (reason === "not-running") this.off();
      else this.showUnavailable(reason === "busy" ? "The serial console is in use" : "The serial console is not available", message, mayForce);
      return;
    }
    if (code === CLOSE_ENDED && this.closedWith) {
      const { reason, message } = this.closedWith;
      if (reason === "ended") this.off(message);
      else if (reason === "taken") this.showUnavailable("Another client took the console", message, this.mayTypeSeen);
      else this.retry(message);
      return;
    }
    if (code === CLOSE_REVOKED) {
      this.lost("The session was ended", this.closedWith?.message || "Your access to this console was revoked.", false);
      return;
    }
    if (code === CLOSE_NOT_FOUND) {
      this.lost("No such VM", `${this.name} is gone, or its console is not yours to open.`, false);
      return;
    }
    if (code === CLOSE_UNAUTHENTICATED) {
      this.lost("You are signed out", "Sign in again to use the console.", false);
      return;
    }
    this.retry("The connection to the server dropped.");
  }

  retry(message) {
    if (this.attempt >= RETRIES || !isShown(this.root)) {
      this.lost("The connection was lost", message);
      return;
    }
    const delay = 1000 * 2 ** this.attempt;
    this.attempt += 1;
    this.setPhase("connecting");
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  // -- what the panel shows ---------------------------------------------------------------------------
  off(message) {
    $("[data-serial-off-text]", this.root).textContent = message || "Its serial console opens here once it runs.";
    this.setPhase("off");
  }

  showUnavailable(title, message, mayForce) {
    $("[data-serial-unavailable-title]", this.root).textContent = title;
    $("[data-serial-unavailable-text]", this.root).textContent = message;
    this.forceButton.hidden = !mayForce;
    this.setPhase("unavailable");
  }

  lost(title, message, canRetry = true) {
    $("[data-serial-lost-title]", this.root).textContent = title;
    $("[data-serial-lost-text]", this.root).textContent = message;
    for (const button of $$("[data-when='lost'] [data-serial-reconnect]", this.root)) button.hidden = !canRetry;
    this.setPhase("lost");
  }

  setRole(role, mayType, writerPresent) {
    this.role = role;
    this.mayType = mayType;
    if (mayType) this.mayTypeSeen = true;
    if (this.term) this.term.options.disableStdin = role !== "writer";
    const chip = this.roleChip;
    if (!role) {
      chip.hidden = true;
      this.takeButton.hidden = true;
    } else if (role === "writer") {
      chip.hidden = false;
      chip.dataset.role = "writer";
      chip.innerHTML = '<i class="ti ti-keyboard" aria-hidden="true"></i>You are typing';
      chip.title = "Your keys go to the guest. Others watching see what you type.";
      this.takeButton.hidden = true;
    } else {
      chip.hidden = false;
      chip.dataset.role = "viewer";
      chip.innerHTML = '<i class="ti ti-eye" aria-hidden="true"></i>View only';
      chip.title = mayType
        ? writerPresent
          ? "Someone else has control: take it to type."
          : "Nobody has control: take it to type."
        : "Shared with you to watch: your keys are not sent.";
      this.takeButton.hidden = !mayType;
    }
    if (role) this.setPhase(role);
  }

  setPhase(phase) {
    this.phase = phase;
    const connected = phase === "writer" || phase === "viewer";
    this.root.dataset.phase = phase;
    this.overlay.hidden = connected;
    for (const card of $$(".kv-console-card", this.overlay)) card.hidden = card.dataset.when !== phase;
    const words = {
      idle: "Not connected",
      connecting: "Connecting…",
      starting: "Starting…",
      writer: "Connected",
      viewer: "Connected",
      off: "Not running",
      unavailable: "Unavailable",
      lost: "Disconnected",
    };
    this.status.dataset.phase = connected ? "connected" : phase === "starting" ? "starting" : phase === "lost" ? "lost" : phase;
    this.statusText.textContent = words[phase] || phase;
    if (connected) this.refit();
  }
}

function init(root) {
  const panel = new SerialPanel(root);
  const shouldConnect = () => isShown(root) && RUNNING.has(root.dataset.state);

  function follow() {
    const shown = isShown(root);
    if (shown && panel.phase === "idle") {
      if (RUNNING.has(root.dataset.state)) panel.connect();
      else panel.off();
    } else if (!shown && !["idle", "off", "unavailable"].includes(panel.phase)) {
      panel.stop("idle"); // let go of the guest's console while nobody looks at it
    } else if (shown) {
      panel.refit();
    }
  }

  onEvents({
    onMessage: (message) => {
      if (message.type !== "vm.state" || String(message.vm) !== panel.uuid) return;
      root.dataset.state = message.state;
      if (RUNNING.has(message.state) && ["off", "starting"].includes(panel.phase) && shouldConnect()) {
        panel.attempt = 0;
        panel.connect();
      }
    },
    onOpen: ({ reconnected }) => {
      if (reconnected && ["off", "starting"].includes(panel.phase) && shouldConnect()) panel.connect();
    },
  });
  document.addEventListener("shown.bs.tab", follow);
  document.addEventListener("hidden.bs.tab", follow);
  document.addEventListener("visibilitychange", follow);
  follow();
}

for (const root of $$("[data-serial]")) init(root);
