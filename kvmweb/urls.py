from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from kvmweb.api.errors import api_not_found
from kvmweb.dashboard import dashboard

urlpatterns = [
    path("", dashboard, name="dashboard"),
    path("", include("kvmweb.accounts.urls")),
    path("hosts/", include("hosts.urls")),
    path("vms/", include("vms.urls")),
    path("", include("consoles.urls")),
    path("", include("consoles.urls_shares")),
    path("networks/", include("networks.urls")),
    path("storage/", include("storage.urls")),
    path("teams/", include("teams.urls")),
    path("operations/", include("kvmweb.operations.urls")),
    path("audit/", include("kvmweb.audit.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("kvmweb.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return api_not_found(request, exception)
    return render(request, "404.html", status=404)
