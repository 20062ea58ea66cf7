from django.urls import path

from vms import views

app_name = "vms"
urlpatterns = [
    path("", views.vm_list, name="list"),
    path("<uuid:vm_uuid>/", views.vm_detail, name="detail"),
]
