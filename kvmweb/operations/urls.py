from django.urls import path

from kvmweb.operations import views

app_name = "operations"
urlpatterns = [
    path("", views.operation_list, name="list"),
    path("<int:op_id>/", views.operation_detail, name="detail"),
]
