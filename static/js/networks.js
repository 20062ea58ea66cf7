// Live network pages: the network list and a network's page. Their live regions (see live.js)
// re-read themselves when these tokens are touched by a network.state message:
//   "network:<id>"     that network changed (state, autostart, its definition, gone)
//   "nethost:<host>"   any network of that host changed, or one appeared
// Everything arrives over the page's one WebSocket; nothing here polls.
import { touch } from "./live.js";
import { onEvents } from "./realtime.js";

onEvents({
  onMessage: (message) => {
    if (message.type !== "network.state" || !message.network) return;
    const { id, host } = message.network;
    touch([`network:${id}`, `nethost:${host}`]);
  },
});
