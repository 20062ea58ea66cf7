"""The snapshots of a VM: read from the stored rows (events, reconciles and host refreshes keep them), changed
through operations."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from kvmweb.actors import actor_from_api
from kvmweb.errors import Invalid
from kvmweb.operations.api import operation_response
from vms import actions, selectors
from vms.snapshot_models import Snapshot
from vms.snapshots import DELETE_CHILDREN, snapshot_support, vm_snapshot, vm_snapshots

ITEM_ACTIONS = ("revert", "delete", "commit")
_ACCEPTED = 202


class SnapshotSerializer(serializers.ModelSerializer[Snapshot]):
    parent = serializers.CharField(source="parent_name")
    current = serializers.BooleanField(source="is_current")
    kind = serializers.SerializerMethodField()

    class Meta:
        model = Snapshot
        fields = [
            "name",
            "parent",
            "description",
            "state",
            "created",
            "current",
            "has_memory",
            "kind",
            "depth",
            "disks",
        ]

    def get_kind(self, obj: Snapshot) -> str:
        return "external" if obj.external else "internal"


@extend_schema(
    methods=["GET"],
    operation_id="vm_snapshots_list",
    responses=inline_serializer(
        "VmSnapshots",
        {
            "snapshots": SnapshotSerializer(many=True),
            "internal_refusal": serializers.CharField(),
            "external_refusal": serializers.CharField(),
        },
    ),
    description="The snapshot tree in order, parents before children (depth gives the indentation).",
)
@extend_schema(
    methods=["POST"],
    operation_id="vm_snapshots_create",
    request=inline_serializer(
        "VmSnapshotCreate",
        {
            "name": serializers.CharField(),
            "description": serializers.CharField(required=False),
            "memory": serializers.BooleanField(required=False, default=True),
            "disk_only": serializers.BooleanField(required=False, default=False),
        },
    ),
    responses={202: OpenApiResponse(description='{"operation": {...}}'), 409: OpenApiResponse(description="refused")},
)
@api_view(["GET", "POST"])
def snapshot_collection(request: Request, vm_uuid: UUID) -> Response:
    if request.method == "POST":
        actor = actor_from_api(request)
        vm = actions.vm_for_action(actor=actor, uuid=vm_uuid)
        op = actions.vm_action(actor=actor, vm=vm, action="snapshot-create", params=_data(request))
        return operation_response(op)
    vm = selectors.vm_get(request.user, vm_uuid)
    support = snapshot_support(vm)
    body = {
        "snapshots": SnapshotSerializer(vm_snapshots(vm), many=True).data,
        "internal_refusal": support.internal_refusal,
        "external_refusal": support.external_refusal,
    }
    return Response(body)


@extend_schema(responses=SnapshotSerializer, operation_id="vm_snapshot")
@api_view(["GET"])
def snapshot_item(request: Request, vm_uuid: UUID, name: str) -> Response:
    vm = selectors.vm_get(request.user, vm_uuid)
    return Response(SnapshotSerializer(vm_snapshot(vm, name)).data)


@extend_schema(
    operation_id="vm_snapshot_action",
    request=inline_serializer(
        "VmSnapshotAction", {"children": serializers.ChoiceField(choices=DELETE_CHILDREN, required=False)}
    ),
    responses={202: OpenApiResponse(description='{"operation": {...}}'), 409: OpenApiResponse(description="refused")},
    description="revert, delete (children: none|with|only) or commit (merge an external snapshot back).",
)
@api_view(["POST"])
def snapshot_action(request: Request, vm_uuid: UUID, name: str, action: str) -> Response:
    actor = actor_from_api(request)
    vm = actions.vm_for_action(actor=actor, uuid=vm_uuid)
    if action not in ITEM_ACTIONS:
        raise Invalid(f"Unknown snapshot action {action!r}; snapshots support: {', '.join(ITEM_ACTIONS)}.")
    vm_snapshot(vm, name)  # 404 for a snapshot the VM does not have
    params = {**_data(request), "snapshot": name}
    return operation_response(actions.vm_action(actor=actor, vm=vm, action=f"snapshot-{action}", params=params))


def _data(request: Request) -> dict[str, Any]:
    data = request.data if hasattr(request.data, "get") else {}
    return {key: data.get(key) for key in data if data.get(key) is not None}
