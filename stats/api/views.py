from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from kvmweb.errors import NotVisible
from stats.objects import RANGES, stat_object
from stats.selectors import POINT_COLUMNS, stats_history

HISTORY = OpenApiResponse(
    description=(
        '{"object": "vm:<uuid>", "range": "1h", "resolution": 10, "points": [[ts, '
        + ", ".join(POINT_COLUMNS)
        + "], ...]}: ts is the bucket's start in epoch seconds; null where nothing was reported."
    )
)


@extend_schema(
    parameters=[OpenApiParameter("range", OpenApiTypes.STR, enum=list(RANGES), default="1h")],
    responses={200: HISTORY},
)
@api_view(["GET"])
def stats_series(request: Request, kind: str, key: str) -> Response:
    """A VM's (kind vm, key its UUID) or host's (kind host, key its id) recent points, for a chart."""
    obj = stat_object(kind, key)
    if obj is None:
        raise NotVisible("Not found.")
    history = stats_history(user=request.user, obj=obj, range_name=request.query_params.get("range", "1h"))
    return Response(
        {
            "object": history.obj.label,
            "range": history.range,
            "resolution": history.resolution,
            "points": history.points,
        }
    )
