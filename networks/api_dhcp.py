"""The DHCP API of a network: its leases (from the rows the lease refresh keeps) and its reservations."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from kvmweb.actors import actor_from_api
from kvmweb.operations.api import operation_response
from networks import dhcp, dhcp_reservations, selectors


class ReservationBody(serializers.Serializer):
    """A reservation; the service checks the values (format, subnet, gateway, overlaps) per field.

    ``family`` (ipv4 by default; ignored on PATCH) picks the DHCP section: IPv4 takes ``mac``, IPv6 ``duid``
    and/or ``name``."""

    family = serializers.CharField(required=False, allow_blank=True, max_length=8)
    mac = serializers.CharField(required=False, allow_blank=True, max_length=64)
    duid = serializers.CharField(required=False, allow_blank=True, max_length=400)
    ip = serializers.CharField(required=False, allow_blank=True, max_length=64)
    name = serializers.CharField(required=False, allow_blank=True, max_length=253)


@extend_schema(responses=OpenApiResponse(description='{"leases": [...], "updated": ISO or null}'))
@api_view(["GET"])
def lease_list(request: Request, network_id: int) -> Response:
    network = selectors.network_get(request.user, network_id)
    leases = dhcp.network_leases(network)
    updated = dhcp.leases_updated(leases)
    return Response(
        {
            "leases": [dhcp.lease_payload(lease) for lease in leases],
            "updated": updated.isoformat() if updated else None,
        }
    )


@extend_schema(
    methods=["GET"], responses=OpenApiResponse(description='{"reservations": [{"family","mac","duid","ip","name"}]}')
)
@extend_schema(methods=["POST"], request=ReservationBody, responses={202: OpenApiResponse(description="the operation")})
@api_view(["GET", "POST"])
def reservation_collection(request: Request, network_id: int) -> Response:
    network = selectors.network_get(request.user, network_id)
    if request.method == "GET":
        found = dhcp_reservations.network_reservations(network)
        return Response({"reservations": [dhcp_reservations.reservation_payload(r) for r in found]})
    body = ReservationBody(data=request.data)
    body.is_valid(raise_exception=True)
    actor = actor_from_api(request)
    return operation_response(dhcp_reservations.reservation_add(actor=actor, network=network, data=body.validated_data))


@extend_schema(
    methods=["PATCH"], request=ReservationBody, responses={202: OpenApiResponse(description="the operation")}
)
@extend_schema(methods=["DELETE"], request=None, responses={202: OpenApiResponse(description="the operation")})
@api_view(["PATCH", "DELETE"])
def reservation_item(request: Request, network_id: int, mac: str) -> Response:
    """`mac` is the URL's key: the reservation's MAC, or its address for an IPv6 one."""
    network = selectors.network_get(request.user, network_id)
    actor = actor_from_api(request)
    if request.method == "DELETE":
        return operation_response(dhcp_reservations.reservation_remove(actor=actor, network=network, key=mac))
    body = ReservationBody(data=request.data, partial=True)
    body.is_valid(raise_exception=True)
    op = dhcp_reservations.reservation_edit(actor=actor, network=network, key=mac, data=body.validated_data)
    return operation_response(op)
