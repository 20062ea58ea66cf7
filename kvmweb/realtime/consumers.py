"""/ws/events/: joins the groups a user may see and forwards what is published there."""

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from kvmweb import access

# Close code for "not authenticated": 4000-4999 are free for applications.
CLOSE_UNAUTHENTICATED = 4401
DEDUPE_MEMORY = 2000


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
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "v": 1, "groups": len(self.joined)})

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The stream is one-way; clients have nothing to say yet.
        return None

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
