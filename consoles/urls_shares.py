from django.urls import path

from consoles import views_shares

app_name = "console_shares"
urlpatterns = [
    path("vms/<uuid:vm_uuid>/console/shares/", views_shares.share_add, name="add"),
    path("vms/<uuid:vm_uuid>/console/shares/<str:username>/revoke/", views_shares.share_revoke, name="revoke"),
    path(
        "vms/<uuid:vm_uuid>/console/shares/teams/<slug:slug>/revoke/",
        views_shares.share_revoke_team,
        name="revoke_team",
    ),
    path("consoles/", views_shares.session_list, name="sessions"),
    path("consoles/sessions/<int:session_id>/end/", views_shares.session_end, name="end"),
]
