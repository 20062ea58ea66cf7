"""/ws/events/: joins the groups a user may see and forwards what is published there."""

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from kvmweb import access
from stats.objects import StatObject, parse_label
from stats.services.watch import stats_watch

# Close code for "not authenticated": 4000-4999 are free for applications.
CLOSE_UNAUTHENTICATED = 4401
DEDUPE_MEMORY = 2000
# Live stats a socket may watch at once (a page shows a few charts, or one page of a VM list).
MAX_WATCHED = 200


class EventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept first: a refused handshake reaches the browser as a bare 1006, and the page
            # could not tell "signed out" from "server down".
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.joined: list[str] = await database_sync_to_async(access.event_groups)(user)
        # A user can be in more than one audience for the same object; send each state once.
        self.last_sent: dict[str, str] = {}
        self.watching: set[StatObject] = set()
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "v": 1, "groups": len(self.joined)})

    async def disconnect(self, code: int) -> None:
        for group in [*getattr(self, "joined", []), *(obj.group for obj in getattr(self, "watching", ()))]:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Clients say one thing: which objects' live stats their page shows.
        # {"action": "watch"|"unwatch", "objects": ["vm:<uuid>", "host:3", ...]}
        action = content.get("action") if isinstance(content, dict) else None
        objects = content.get("objects") if isinstance(content, dict) else None
        if action not in ("watch", "unwatch") or not isinstance(objects, list) or len(objects) > MAX_WATCHED:
            await self.send_json({"type": "error", "v": 1, "message": "Expected {action: watch|unwatch, objects}."})
            return
        labels = list(dict.fromkeys(o for o in objects if isinstance(o, str)))
        parsed = {label: parse_label(label) for label in labels}
        wanted = {obj for obj in parsed.values() if obj is not None}
        refused = {label for label, obj in parsed.items() if obj is None}
        if action == "unwatch":
            await self._unwatch(wanted & self.watching)
        else:
            refused |= await self._watch(wanted)
        await self.send_json(
            {"type": "stats.watch", "v": 1, "watching": len(self.watching), "refused": sorted(refused)}
        )

    async def _watch(self, wanted: set[StatObject]) -> set[str]:
        # The page renews its whole list every 30 s: objects already watched don't count again.
        over = sorted(wanted - self.watching)[MAX_WATCHED - len(self.watching) :]
        wanted -= set(over)
        result = await database_sync_to_async(stats_watch)(user=self.scope["user"], objects=wanted)
        for obj in result.allowed:
            if obj not in self.watching:
                await self.channel_layer.group_add(obj.group, self.channel_name)
                self.watching.add(obj)
        # Access is checked again at every renewal: an object the user lost stops at once.
        await self._unwatch(set(result.refused) & self.watching)
        return {obj.label for obj in [*result.refused, *over]}

    async def _unwatch(self, objects: set[StatObject]) -> None:
        # The shared Redis watch lapses on its own: another page may still show the object.
        for obj in objects:
            await self.channel_layer.group_discard(obj.group, self.channel_name)
            self.watching.discard(obj)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return json.loads(text_data)
        except ValueError:
            return None  # answered as a malformed request, rather than dropping the socket

    async def event_forward(self, event: dict[str, Any]) -> None:
        message = event["message"]
        key = _dedupe_key(message)
        encoded = json.dumps(message, sort_keys=True)
        if key is not None:
            if self.last_sent.get(key) == encoded:
                return
            if len(self.last_sent) >= DEDUPE_MEMORY:
                self.last_sent.clear()
            self.last_sent[key] = encoded
        await self.send(text_data=encoded)


def _dedupe_key(message: dict[str, Any]) -> str | None:
    kind = message.get("type")
    body = message.get("operation") or message.get("host") or {}
    if kind and isinstance(body, dict) and "id" in body:
        return f"{kind}:{body['id']}"
    return None
