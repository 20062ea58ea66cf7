"""WebSocket authentication: the browser's session, or `?token=` for API clients."""

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        keys = parse_qs(scope.get("query_string", b"").decode()).get("token")
        if keys:
            scope = {**scope, "user": await _user_for_token(keys[0])}
        return await super().__call__(scope, receive, send)


def WebSocketAuthStack(inner: Any) -> Any:  # noqa: N802  (reads like Channels' own stacks)
    # The token, when given, replaces whatever user the session named.
    return AuthMiddlewareStack(TokenAuthMiddleware(inner))
