from django.urls import path

from storage import views, views_pools, views_volumes

app_name = "storage"
urlpatterns = [
    path("", views.pool_list, name="list"),
    path("pools/new/", views_pools.pool_new, name="pool-new"),
    path("pools/<int:pool_id>/", views.pool_detail, name="pool"),
    path("pools/<int:pool_id>/actions/<slug:action>/", views_pools.pool_action, name="pool-action"),
    path("pools/<int:pool_id>/volumes/new/", views_volumes.volume_create, name="volume-create"),
    path("pools/<int:pool_id>/upload/", views_volumes.upload_page, name="upload"),
    path("volumes/<int:volume_id>/", views_volumes.volume_detail, name="volume"),
    path("volumes/<int:volume_id>/actions/<slug:action>/", views_volumes.volume_action, name="volume-action"),
    path("isos/", views_volumes.iso_library, name="isos"),
]
