from django.urls import path

from hosts import views

app_name = "hosts"
urlpatterns = [
    path("", views.host_list, name="list"),
    path("add/", views.host_add, name="add"),
    path("<int:host_id>/", views.host_detail, name="detail"),
    path("<int:host_id>/edit/", views.host_edit, name="edit"),
    path("<int:host_id>/refresh/", views.host_refresh, name="refresh"),
    path("<int:host_id>/delete/", views.host_delete, name="delete"),
]
