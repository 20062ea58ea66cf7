from django.urls import path

from teams import views

app_name = "teams"
urlpatterns = [
    path("", views.team_list, name="list"),
    path("add/", views.team_create, name="add"),
    path("<slug:slug>/", views.team_detail, name="detail"),
    path("<slug:slug>/edit/", views.team_update, name="edit"),
    path("<slug:slug>/delete/", views.team_delete, name="delete"),
    path("<slug:slug>/members/", views.member_add, name="member_add"),
    path("<slug:slug>/members/<str:username>/role/", views.member_role, name="member_role"),
    path("<slug:slug>/members/<str:username>/remove/", views.member_remove, name="member_remove"),
]
