from django.urls import path

from networks import dhcp_views, views

app_name = "networks"
urlpatterns = [
    path("", views.network_list, name="list"),
    path("new/", views.network_new, name="new"),
    path("<int:network_id>/", views.network_detail, name="detail"),
    path("<int:network_id>/actions/<slug:action>/", views.network_action, name="action"),
    path("<int:network_id>/xml/", views.network_xml_edit, name="xml_edit"),
    path("<int:network_id>/xml/review/", views.network_xml_review, name="xml_review"),
    # The DHCP panel's reservation forms (networks/dhcp_views.py, H7).
    path("<int:network_id>/reservations/", dhcp_views.reservation_add, name="reservation-add"),
    path("<int:network_id>/reservations/<str:mac>/", dhcp_views.reservation_edit, name="reservation-edit"),
    path("<int:network_id>/reservations/<str:mac>/remove/", dhcp_views.reservation_remove, name="reservation-remove"),
]
