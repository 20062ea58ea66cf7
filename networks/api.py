"""The network API: list and define networks, read one (and its XML), and queue actions on it (202 + operation)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from hosts import selectors as host_selectors
from kvmweb import access
from kvmweb.actors import actor_from_api
from kvmweb.errors import Invalid
from kvmweb.operations.api import operation_response
from networks import actions, selectors
from networks.checks import DEFINE_MODES
from networks.models import Network


class NetworkSerializer(serializers.ModelSerializer):
    host = serializers.PrimaryKeyRelatedField(read_only=True)
    host_name = serializers.CharField(source="host.name", read_only=True)
    mode = serializers.SerializerMethodField()

    class Meta:
        model = Network
        fields = ["id", "uuid", "name", "host", "host_name", "active", "autostart", "persistent", "bridge",
                  "forward_mode", "mode", "gone_since", "updated"]  # fmt: skip
        read_only_fields = fields

    def get_mode(self, network: Network) -> str:
        return selectors.network_mode(network)


class NetworkDetailSerializer(NetworkSerializer):
    class Meta(NetworkSerializer.Meta):
        fields = [*NetworkSerializer.Meta.fields, "xml"]
        read_only_fields = fields


class NetworkDefine(serializers.Serializer):
    """What defining a network takes; networks/checks.py checks the values and names the field it refuses."""

    host = serializers.IntegerField()
    mode = serializers.CharField(max_length=16, help_text=f"One of: {', '.join(DEFINE_MODES)} (raw XML in `xml`).")
    name = serializers.CharField(required=False, allow_blank=True, max_length=64)
    ipv4 = serializers.DictField(required=False, allow_null=True)
    ipv6 = serializers.DictField(required=False, allow_null=True)
    bridge = serializers.DictField(required=False, allow_null=True)
    forward_dev = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=64)
    portgroups = serializers.ListField(child=serializers.DictField(), required=False, max_length=64)
    bandwidth = serializers.DictField(required=False, allow_null=True)
    autostart = serializers.BooleanField(required=False, default=False)
    start = serializers.BooleanField(required=False, default=False)
    xml = serializers.CharField(required=False, allow_blank=True, max_length=65536, trim_whitespace=False)


@extend_schema(methods=["GET"], responses=NetworkSerializer(many=True))
@extend_schema(methods=["POST"], request=NetworkDefine, responses={202: OpenApiResponse(description="the operation")})
@api_view(["GET", "POST"])
def network_collection(request: Request) -> Response:
    if request.method == "GET":
        host = request.query_params.get("host", "")
        if host and not host.isdigit():
            raise Invalid("host must be a host id.", details={"host": "A host id."})
        found = selectors.network_list(request.user, host_id=int(host) if host else None)
        return Response(NetworkSerializer(found, many=True).data)
    body = NetworkDefine(data=request.data)
    body.is_valid(raise_exception=True)
    data = dict(body.validated_data)
    host = host_selectors.host_get(request.user, data.pop("host"))
    return operation_response(actions.network_define(actor=actor_from_api(request), host=host, data=data))


@extend_schema(responses=NetworkDetailSerializer)
@api_view(["GET"])
def network_item(request: Request, network_id: int) -> Response:
    return Response(NetworkDetailSerializer(selectors.network_get(request.user, network_id)).data)


@extend_schema(responses=OpenApiResponse(description='{"xml": the persistent definition, read from the host now}'))
@api_view(["GET"])
def network_xml(request: Request, network_id: int) -> Response:
    """The XML editor's source: the persistent definition as last observed (administrators only)."""
    network = selectors.network_get(request.user, network_id)
    access.require(request.user, "network.manage")
    return Response({"xml": network.xml_inactive or network.xml})


@extend_schema(request=None, responses={202: OpenApiResponse(description="the queued operation")})
@api_view(["POST"])
def network_action(request: Request, network_id: int, action: str) -> Response:
    network = selectors.network_get(request.user, network_id)
    params = {"xml": request.data.get("xml")} if "xml" in request.data else {}
    op = actions.network_action(actor=actor_from_api(request), network=network, action=action, params=params)
    return operation_response(op)
