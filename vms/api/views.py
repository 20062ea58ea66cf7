from uuid import UUID

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from vms import selectors
from vms.api.serializers import VmDetailSerializer, VmSerializer

FILTERS = [
    OpenApiParameter("host", OpenApiTypes.INT),
    OpenApiParameter("state", OpenApiTypes.STR, description="libvirt state in lower case, or gone"),
    OpenApiParameter("owner", OpenApiTypes.STR, description="a username, or none for unowned VMs"),
    OpenApiParameter("search", OpenApiTypes.STR, description="name, UUID, host or owner"),
    OpenApiParameter(
        "sort", OpenApiTypes.STR, description="name, state, host, owner, vcpus, memory, changed; - for descending"
    ),
]


@extend_schema(parameters=FILTERS, responses=VmSerializer(many=True))
@api_view(["GET"])
def vm_collection(request: Request) -> Response:
    filters = selectors.parse_filters(request.query_params.dict())
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(selectors.vm_list(request.user, filters), request)
    return paginator.get_paginated_response(VmSerializer(page, many=True).data)


@extend_schema(responses=VmDetailSerializer)
@api_view(["GET"])
def vm_item(request: Request, vm_uuid: UUID) -> Response:
    return Response(VmDetailSerializer(selectors.vm_get(request.user, vm_uuid)).data)
