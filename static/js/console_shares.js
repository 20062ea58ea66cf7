// Console sharing, live: the VM page's "Share view-only" and "Watching now" lists, the VM list's
// "Shared with me" and /consoles/ are live regions (live.js) fetched again when a message says they
// changed:
//   {"type": "console.session", "vm": uuid, "session": id, "kind", "user", "view_only", "live",
//    "started", "ended", "end_reason"}
//       a console opened or closed: regions watching "console:<uuid>" or "console:*"
//   {"type": "console.share", "vm": uuid, "user": name, "shared": bool}
//   {"type": "console.share", "vm": uuid, "user": null, "team": slug, "shared": bool}
//       a share with a user or a team added or revoked: regions watching "console:<uuid>" and "consoleshares"
import { touch } from "./live.js";
import { onEvents } from "./realtime.js";

onEvents({
  onMessage(message) {
    if (!message || !message.vm) return;
    if (message.type === "console.session") touch([`console:${message.vm}`, "console:*"]);
    else if (message.type === "console.share") touch([`console:${message.vm}`, "consoleshares"]);
  },
});
