// The page's one WebSocket to the server's event stream (body[data-ws-url], e.g. "/ws/events/").
// It reconnects on its own with backoff (1 s, 2 s, 4 s ... up to 30 s) and shows its state in the
// top bar (#ws-status). Messages are JSON {"type": ..., "v": 1, ...}; unknown types are ignored by
// the handlers. Nothing here polls: the only timers are the reconnect and its countdown text.

const MIN_DELAY = 1000;
const MAX_DELAY = 30000;
const CLOSE_UNAUTHENTICATED = 4401; // the server's close code for "not signed in"

// Other modules (stats.js) listen to the same socket and may talk on it.
const listeners = new Set();
let current = null;

/** Also call onMessage(message) for every message and onOpen({reconnected}) on every (re)connection. */
export function onEvents({ onMessage = () => {}, onOpen = () => {} } = {}) {
  const listener = { onMessage, onOpen };
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Send a JSON message to the server; false when the socket is not open (onOpen will follow). */
export function sendEvent(message) {
  if (!current || current.readyState !== WebSocket.OPEN) return false;
  current.send(JSON.stringify(message));
  return true;
}

function notify(kind, value) {
  for (const listener of listeners) {
    try {
      listener[kind](value);
    } catch (error) {
      console.error("kvmweb: a live update could not be applied", error);
    }
  }
}

export function connectEvents(path, { onMessage = () => {}, onOpen = () => {} } = {}) {
  const statusEl = document.getElementById("ws-status");
  const textEl = statusEl?.querySelector(".kv-conn-text");
  let socket = null;
  let attempt = 0;
  let opened = false;
  let retryTimer = null;
  let countdownTimer = null;
  let retryAt = 0;
  let stopped = false;

  const url = () => {
    if (/^wss?:/.test(path)) return path;
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${proto}//${window.location.host}${path.startsWith("/") ? "" : "/"}${path}`;
  };

  function show(state, text, title) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    statusEl.title = title;
    statusEl.setAttribute("aria-label", title);
    if (textEl) textEl.textContent = text;
  }

  function clearTimers() {
    window.clearTimeout(retryTimer);
    window.clearInterval(countdownTimer);
    retryTimer = countdownTimer = null;
  }

  function open() {
    clearTimers();
    if (stopped) return;
    show(
      opened ? "reconnecting" : "connecting",
      opened ? "Reconnecting…" : "Connecting…",
      opened ? "Reconnecting to live updates" : "Connecting to live updates",
    );
    try {
      socket = new WebSocket(url());
    } catch {
      schedule();
      return;
    }
    socket.addEventListener("open", () => {
      const reconnected = opened;
      opened = true;
      attempt = 0;
      show("live", "Live", "Live updates are on: this page changes as things happen");
      current = socket;
      onOpen({ reconnected });
      notify("onOpen", { reconnected });
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message && typeof message.type === "string") {
        try {
          onMessage(message);
        } catch (error) {
          console.error("kvmweb: a live update could not be applied", error);
        }
        notify("onMessage", message);
      }
    });
    socket.addEventListener("close", (event) => {
      socket = current = null;
      if (event.code === CLOSE_UNAUTHENTICATED) {
        // The session ended (signed out elsewhere, or expired): retrying cannot help.
        stopped = true;
        clearTimers();
        show("offline", "Signed out", "Your session has ended. Click to sign in again.");
        return;
      }
      schedule();
    });
  }

  function schedule() {
    if (stopped || retryTimer) return;
    if (navigator.onLine === false) {
      show("offline", "Offline", "This device is offline: live updates resume when it is back");
      return;
    }
    const base = Math.min(MAX_DELAY, MIN_DELAY * 2 ** attempt);
    const delay = Math.round(base * (0.85 + Math.random() * 0.3));
    attempt += 1;
    retryAt = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      show("reconnecting", `Reconnecting in ${left} s`, "Live updates are interrupted. Click to reconnect now.");
    };
    tick();
    countdownTimer = window.setInterval(tick, 1000);
    retryTimer = window.setTimeout(open, delay);
  }

  statusEl?.addEventListener("click", () => {
    if (stopped && statusEl.dataset.state === "offline") {
      window.location.reload(); // the server sends a signed-out visitor to the sign-in page
      return;
    }
    if (statusEl.dataset.state === "reconnecting" || statusEl.dataset.state === "offline") {
      attempt = 0;
      open();
    }
  });
  window.addEventListener("online", () => {
    if (!socket) {
      attempt = 0;
      open();
    }
  });
  window.addEventListener("offline", () => {
    if (!socket) show("offline", "Offline", "This device is offline: live updates resume when it is back");
  });
  window.addEventListener("pagehide", () => {
    stopped = true;
    clearTimers();
    socket?.close();
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) {
      stopped = false;
      open();
    }
  });

  open();
  return {
    get socket() {
      return socket;
    },
  };
}
