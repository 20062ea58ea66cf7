from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from hosts import selectors, services
from hosts.api.serializers import HostDelete, HostSerializer, HostWrite
from hosts.models import Host
from kvmweb import access
from kvmweb.actors import actor_from_api
from kvmweb.errors import Invalid
from kvmweb.operations.api import OperationSerializer, operation_response


def _created(host: Host, op: object, status: int) -> Response:
    body = {"host": HostSerializer(host).data, "operation": OperationSerializer(op).data if op else None}
    return Response(body, status=status)


@extend_schema(methods=["GET"], responses=HostSerializer(many=True))
@extend_schema(methods=["POST"], request=HostWrite, responses={201: OpenApiResponse(description="host and operation")})
@api_view(["GET", "POST"])
def host_collection(request: Request) -> Response:
    if request.method == "GET":
        return Response(HostSerializer(access.visible_hosts(request.user), many=True).data)
    actor = actor_from_api(request)
    access.authorize(actor, "host.add")
    body = HostWrite(data=request.data)
    body.is_valid(raise_exception=True)
    host, op = services.host_create(actor=actor, data=body.to_input())
    return _created(host, op, 201)


@extend_schema(methods=["GET"], responses=HostSerializer)
@extend_schema(methods=["PATCH"], request=HostWrite, responses=HostSerializer)
@extend_schema(methods=["DELETE"], request=HostDelete, responses={204: None})
@api_view(["GET", "PATCH", "DELETE"])
def host_item(request: Request, host_id: int) -> Response:
    host = selectors.host_get(request.user, host_id)
    if request.method == "GET":
        return Response(HostSerializer(host).data)
    actor = actor_from_api(request)
    if request.method == "PATCH":
        access.authorize(actor, "host.change", host, target=host.as_target())
        current = HostSerializer(host).data
        body = HostWrite(data={**{k: current[k] for k in HostWrite().fields}, **request.data})
        body.is_valid(raise_exception=True)
        host, op = services.host_update(actor=actor, host=host, data=body.to_input())
        return _created(host, op, 200)
    access.authorize(actor, "host.delete", host, target=host.as_target())
    confirm = request.data.get("confirm_name") or request.query_params.get("confirm_name") or ""
    if not confirm:
        raise Invalid("Confirm by sending confirm_name with the host's name.", details={"confirm_name": "Required."})
    services.host_delete(actor=actor, host=host, confirm_name=confirm)
    return Response(status=204)


@extend_schema(request=None, responses={202: OpenApiResponse(description="the queued operation")})
@api_view(["POST"])
def host_action(request: Request, host_id: int, action: str) -> Response:
    host = selectors.host_get(request.user, host_id)
    actor = actor_from_api(request)
    if action != "refresh":
        raise Invalid(f"Unknown host action {action!r}; hosts support: refresh.")
    access.authorize(actor, "host.refresh", host, target=host.as_target())
    return operation_response(services.host_refresh(actor=actor, host=host))
