from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle

from kvmweb.actors import Actor, actor_from_request
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_record


class TokenRequest(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class LoginThrottle(AnonRateThrottle):
    rate = "20/min"


@extend_schema(request=TokenRequest, responses=inline_serializer("TokenResponse", {"token": serializers.CharField()}))
@api_view(["POST"])
@authentication_classes([])
@permission_classes([])
@throttle_classes([LoginThrottle])
def obtain_token(request: Request) -> Response:
    """Exchange a username and password for an API token (`Authorization: Token <key>`)."""
    body = TokenRequest(data=request.data)
    body.is_valid(raise_exception=True)
    user = authenticate(request._request, **body.validated_data)
    actor = actor_from_request(request._request)
    if user is None or not user.is_active:
        audit_record(
            actor=actor,
            action="auth.token",
            target=None,
            outcome=AuditEvent.Outcome.DENIED,
            message=f"Bad credentials for {body.validated_data['username']!r}",
        )
        raise serializers.ValidationError({"non_field_errors": ["Unable to log in with these credentials."]})
    token, _ = Token.objects.get_or_create(user=user)
    audit_record(
        actor=Actor(user=user, ip=actor.ip),
        action="auth.token",
        target=None,
        outcome=AuditEvent.Outcome.SUCCEEDED,
    )
    return Response({"token": token.key})
