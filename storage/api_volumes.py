"""The volume API: list, read, create, act (clone, convert, resize, wipe, delete), upload, download."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, parser_classes
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response

from kvmweb.actors import actor_from_api
from kvmweb.errors import Invalid
from kvmweb.operations.api import operation_response
from kvmweb.virt import volumes as virt_volumes
from storage import uploads, volumes
from storage.models import Volume
from storage.upload_body import request_body

ACCEPTED = {202: OpenApiResponse(description='{"operation": {...}}')}


class BodyLeftUnread(BaseParser):
    """Accepts any body and reads none of it: the upload view streams it to a file itself. (The CSRF
    check of a signed-in browser asks for request.POST, which would otherwise parse, or refuse, it.)"""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> dict[str, Any]:
        return {}


class VolumeSerializer(serializers.ModelSerializer):
    pool = serializers.IntegerField(source="pool_id")
    host = serializers.IntegerField(source="pool.host_id")

    class Meta:
        model = Volume
        fields = [
            "id", "name", "pool", "host", "path", "type", "format", "capacity", "allocation", "backing_path",
            "encryption", "secret_uuid",
        ]  # fmt: skip
        read_only_fields = fields


@extend_schema(
    methods=["GET"],
    parameters=[OpenApiParameter("pool", OpenApiTypes.INT)],
    responses=VolumeSerializer(many=True),
    operation_id="volumes_list",
)
@extend_schema(
    methods=["POST"],
    operation_id="volumes_create",
    request=OpenApiTypes.OBJECT,
    responses=ACCEPTED,
    description="Create a volume: pool (id), name, size, unit (MiB|GiB|TiB), format (raw|qcow2), "
    "provisioning (thin|metadata|full); encrypted (true) with passphrase (8 to 1024 characters) makes a LUKS "
    "qcow2 whose passphrase only the host keeps, as a libvirt secret. Administrators only.",
)
@api_view(["GET", "POST"])
def volume_collection(request: Request) -> Response:
    if request.method == "POST":
        data = _data(request)
        actor = actor_from_api(request)
        pool = volumes.pool_for_change(actor=actor, user=request.user, pool_id=data.get("pool"))
        return operation_response(volumes.volume_create(actor=actor, pool=pool, data=data))
    pool = request.query_params.get("pool", "")
    vols = volumes.volume_list(request.user, pool_id=int(pool) if pool.isdigit() else None)
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(vols, request)
    return paginator.get_paginated_response(VolumeSerializer(page, many=True).data)


@extend_schema(responses=VolumeSerializer)
@api_view(["GET"])
def volume_item(request: Request, volume_id: int) -> Response:
    volume = volumes.volume_get(request.user, volume_id)
    body = {
        **VolumeSerializer(volume).data,
        "backing_chain": volumes.backing_chain(volume),
        "users": volumes.volume_users(volume),
    }
    return Response(body)


@extend_schema(
    operation_id="volume_action",
    request=OpenApiTypes.OBJECT,
    responses=ACCEPTED,
    description="Actions: clone and convert (name, format, pool; compress: true for a compressed qcow2 copy, "
    "streamed through the worker), resize (size, unit; grow only), wipe and delete (confirm: the volume's name). "
    "Administrators only.",
)
@api_view(["POST"])
def volume_action(request: Request, volume_id: int, action: str) -> Response:
    actor = actor_from_api(request)
    volume = volumes.volume_for_action(actor=actor, user=request.user, volume_id=volume_id)
    return operation_response(volumes.volume_action(actor=actor, volume=volume, action=action, params=_data(request)))


@extend_schema(responses={200: OpenApiTypes.BINARY}, operation_id="volume_download")
@api_view(["GET"])
def volume_download(request: Request, volume_id: int) -> StreamingHttpResponse:
    actor = actor_from_api(request)
    volume = volumes.volume_for_action(actor=actor, user=request.user, volume_id=volume_id)
    chunks = virt_volumes.download_volume(volume.pool.host.virt_target(), volume.path)
    response = StreamingHttpResponse(chunks, content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="{volume.name}"'
    return response


@extend_schema(
    operation_id="pool_upload",
    parameters=[
        OpenApiParameter("name", OpenApiTypes.STR, required=True),
        # Not "format": DRF reads that query parameter as the response format.
        OpenApiParameter("image_format", OpenApiTypes.STR, description="raw (default; ISOs too) or qcow2"),
    ],
    request={"application/octet-stream": OpenApiTypes.BINARY},
    responses=ACCEPTED,
    description="The request body is the file, sent as it is, with its Content-Length. Administrators only.",
)
@api_view(["POST"])
@parser_classes([BodyLeftUnread])
def pool_upload(request: Request, pool_id: int) -> Response:
    actor = actor_from_api(request)
    pool = volumes.pool_for_change(actor=actor, user=request.user, pool_id=pool_id)
    query = request.query_params
    size = request.META.get("CONTENT_LENGTH") or ""
    # From the raw WSGI request: reading it does not parse (nor buffer) the body the way request.data would.
    body = request_body(request._request)
    op = uploads.upload_receive(
        actor=actor, pool=pool, name=query.get("name"), fmt=query.get("image_format"), size=size, body=body
    )
    return operation_response(op)


@extend_schema(responses=ACCEPTED, request=None, operation_id="upload_cancel")
@api_view(["POST"])
def upload_cancel(request: Request, op_id: int) -> Response:
    actor = actor_from_api(request)
    op = uploads.upload_for_cancel(actor=actor, user=request.user, op_id=op_id)
    return operation_response(uploads.upload_cancel(actor=actor, op=op), status=200)


def _data(request: Request) -> dict[str, Any]:
    data = request.data if hasattr(request.data, "get") else None
    if data is None:
        raise Invalid("Send a JSON object.")
    return {key: data.get(key) for key in data}
