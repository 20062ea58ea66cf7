from django.urls import path

from vms import views, views_xml

app_name = "vms"
urlpatterns = [
    path("", views.vm_list, name="list"),
    path("new/", views.vm_new, name="new"),
    path("templates/", views.template_list, name="templates"),
    path("actions/<slug:action>/", views.vm_bulk_action, name="bulk_action"),
    path("<uuid:vm_uuid>/", views.vm_detail, name="detail"),
    path("<uuid:vm_uuid>/actions/<slug:action>/", views.vm_action, name="action"),
    path("<uuid:vm_uuid>/xml/", views_xml.vm_xml_edit, name="xml_edit"),
    path("<uuid:vm_uuid>/xml/review/", views_xml.vm_xml_review, name="xml_review"),
    path("<uuid:vm_uuid>/log/", views_xml.vm_log, name="log"),
    path("<uuid:vm_uuid>/template/", views.vm_template, name="template"),
    path("<uuid:vm_uuid>/owner/", views.vm_reassign, name="reassign"),
]
