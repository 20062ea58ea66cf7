"""The storage pool API: list and define pools, read one, and queue actions on it (202 + operation)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from hosts import selectors as host_selectors
from kvmweb.actors import actor_from_api
from kvmweb.errors import Invalid
from kvmweb.operations.api import operation_response
from storage import pools, selectors
from storage.models import StoragePool


class PoolSerializer(serializers.ModelSerializer):
    host = serializers.PrimaryKeyRelatedField(read_only=True)
    host_name = serializers.CharField(source="host.name", read_only=True)

    class Meta:
        model = StoragePool
        fields = ["id", "uuid", "name", "host", "host_name", "type", "state", "autostart", "persistent",
                  "capacity", "allocation", "available", "target_path", "gone_since"]  # fmt: skip
        read_only_fields = fields


class PoolDetailSerializer(PoolSerializer):
    class Meta(PoolSerializer.Meta):
        fields = [*PoolSerializer.Meta.fields, "xml"]
        read_only_fields = fields


class PoolDefine(serializers.Serializer):
    """What defining a pool takes; which fields apply depends on `type` (`xml` for any other type)."""

    host = serializers.IntegerField()
    type = serializers.ChoiceField(choices=pools.POOL_TYPES)
    name = serializers.CharField(required=False, allow_blank=True, max_length=64)
    target_path = serializers.CharField(required=False, allow_blank=True, max_length=1024)
    source_devices = serializers.ListField(child=serializers.CharField(max_length=1024), required=False, max_length=64)
    source_format = serializers.CharField(required=False, allow_blank=True, max_length=32)
    source_host = serializers.CharField(required=False, allow_blank=True, max_length=255)
    source_dir = serializers.CharField(required=False, allow_blank=True, max_length=1024)
    source_name = serializers.CharField(required=False, allow_blank=True, max_length=128)
    iqn = serializers.CharField(required=False, allow_blank=True, max_length=255)
    xml = serializers.CharField(required=False, allow_blank=True, max_length=65536, trim_whitespace=False)


@extend_schema(methods=["GET"], responses=PoolSerializer(many=True))
@extend_schema(methods=["POST"], request=PoolDefine, responses={202: OpenApiResponse(description="the operation")})
@api_view(["GET", "POST"])
def pool_collection(request: Request) -> Response:
    if request.method == "GET":
        host = request.query_params.get("host", "")
        if host and not host.isdigit():
            raise Invalid("host must be a host id.", details={"host": "A host id."})
        found = selectors.pool_list(request.user, host_id=int(host) if host else None)
        return Response(PoolSerializer(found, many=True).data)
    body = PoolDefine(data=request.data)
    body.is_valid(raise_exception=True)
    data = dict(body.validated_data)
    host = host_selectors.host_get(request.user, data.pop("host"))
    return operation_response(pools.pool_define(actor=actor_from_api(request), host=host, data=data))


@extend_schema(responses=PoolDetailSerializer)
@api_view(["GET"])
def pool_item(request: Request, pool_id: int) -> Response:
    return Response(PoolDetailSerializer(selectors.pool_get(request.user, pool_id)).data)


@extend_schema(request=None, responses={202: OpenApiResponse(description="the queued operation")})
@api_view(["POST"])
def pool_action(request: Request, pool_id: int, action: str) -> Response:
    pool = selectors.pool_get(request.user, pool_id)
    params = {key: request.data.get(key) for key in ("delete_contents", "confirm") if key in request.data}
    return operation_response(pools.pool_action(actor=actor_from_api(request), pool=pool, action=action, params=params))
