from django.urls import path

from consoles import views

app_name = "consoles"
urlpatterns = [
    path("vms/<uuid:vm_uuid>/console/", views.console_page, name="page"),
    path("vms/<uuid:vm_uuid>/console/token/", views.console_token, name="token"),
]
