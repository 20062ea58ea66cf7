from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from kvmweb.errors import NotVisible
from kvmweb.operations.models import Operation
from kvmweb.operations.selectors import operations_for


class OperationSerializer(serializers.ModelSerializer):
    target = serializers.SerializerMethodField()
    error = serializers.CharField()
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Operation
        fields = [
            "id",
            "kind",
            "target",
            "status",
            "progress",
            "message",
            "error",
            "error_detail",
            "requested_by",
            "created",
            "started",
            "finished",
        ]
        read_only_fields = fields

    def get_target(self, op: Operation) -> dict[str, str]:
        return op.target.as_dict()


def operation_response(op: Operation, status: int = 202) -> Response:
    return Response({"operation": OperationSerializer(op).data}, status=status)


@extend_schema(responses=OperationSerializer(many=True))
@api_view(["GET"])
def operation_list(request: Request) -> Response:
    ops = operations_for(request.user)
    if status := request.query_params.get("status"):
        ops = ops.filter(status=status)
    if kind := request.query_params.get("kind"):
        ops = ops.filter(kind=kind)
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(ops, request)
    return paginator.get_paginated_response(OperationSerializer(page, many=True).data)


@extend_schema(responses=OperationSerializer)
@api_view(["GET"])
def operation_detail(request: Request, op_id: int) -> Response:
    op = operations_for(request.user).filter(pk=op_id).first()
    if op is None:
        raise NotVisible("No such operation.")
    return Response(OperationSerializer(op).data)
