from django.urls import path

from storage import views

app_name = "storage"
urlpatterns = [
    path("", views.pool_list, name="list"),
    path("pools/<int:pool_id>/", views.pool_detail, name="pool"),
]
