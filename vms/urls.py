from django.urls import path

from vms import views

app_name = "vms"
urlpatterns = [
    path("", views.vm_list, name="list"),
    path("actions/<slug:action>/", views.vm_bulk_action, name="bulk_action"),
    path("<uuid:vm_uuid>/", views.vm_detail, name="detail"),
    path("<uuid:vm_uuid>/actions/<slug:action>/", views.vm_action, name="action"),
]
