"""POST /api/v1/vms/<uuid>/console/: a single-use token for the console proxy."""

from uuid import UUID

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from consoles.services import console_open, console_vm
from kvmweb.actors import actor_from_api
from kvmweb.errors import Invalid


@extend_schema(
    operation_id="vm_console",
    request=inline_serializer("ConsoleRequest", {"view_only": serializers.BooleanField(required=False)}),
    responses={
        200: inline_serializer(
            "ConsoleToken",
            {
                "token": serializers.CharField(),
                "websocket_url": serializers.CharField(),
                "expires": serializers.FloatField(),
            },
        ),
        404: OpenApiResponse(description="no such VM, or not yours"),
        409: OpenApiResponse(description="no screen to show: the VM is not running, or has no VNC display"),
    },
    description=(
        "A token to open the VM's graphical console once, within seconds: connect a WebSocket to websocket_url "
        "(relative to this site). expires is a Unix time. Users the console is shared with always get a view-only one."
    ),
)
@api_view(["POST"])
def vm_console(request: Request, vm_uuid: UUID) -> Response:
    actor = actor_from_api(request)
    view_only = _view_only(request)
    vm = console_vm(actor=actor, uuid=vm_uuid)
    ticket = console_open(actor=actor, vm=vm, view_only=view_only)
    return Response({"token": ticket.token, "websocket_url": ticket.websocket_url, "expires": ticket.expires})


def _view_only(request: Request) -> bool:
    value = request.data.get("view_only", False) if hasattr(request.data, "get") else False
    if value in (True, False, "true", "false"):
        return value in (True, "true")
    message = "view_only is true or false."
    raise Invalid(message, details={"view_only": message})
