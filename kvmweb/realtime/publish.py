"""The one way to push a message to browsers: after the transaction commits, to Channels groups."""

import json
import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

MESSAGE_VERSION = 1


def publish(groups: str | Iterable[str], message: dict[str, Any]) -> None:
    """Send `message` to every group once the current transaction commits (at once outside one).

    Sending before commit would let a browser re-read a row that doesn't exist yet.
    """
    targets = [groups] if isinstance(groups, str) else sorted(set(groups))
    # Round-trip now so a non-JSON payload fails in the caller, not silently in a socket.
    payload = json.loads(json.dumps({**message, "v": MESSAGE_VERSION}))
    transaction.on_commit(lambda: _send(targets, payload))


def _send(groups: list[str], payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(_send_all)(layer, groups, payload)
    except Exception:  # a push is best effort: the page is corrected by the next event or a reload
        log.exception("could not publish %s to %s", payload.get("type"), groups)


async def _send_all(layer: Any, groups: list[str], payload: dict[str, Any]) -> None:
    # One async_to_sync round trip for all groups: each crossing costs milliseconds.
    for group in groups:
        await layer.group_send(group, {"type": "event.forward", "message": payload})
