from django.urls import path

from consoles import api as consoles
from consoles import api_shares as console_shares
from hosts.api import views as hosts
from kvmweb.api.auth import obtain_token
from kvmweb.operations import api as operations
from networks import api as networks
from networks import api_dhcp as network_dhcp
from stats.api import views as stats
from storage import api as storage
from storage import api_volumes as volumes
from teams import api as teams
from vms.api import snapshots as vm_snapshots
from vms.api import views as vms
from vms.api import views_catalog as vm_catalog

urlpatterns = [
    path("auth/token/", obtain_token, name="api-token"),
    path("hosts/", hosts.host_collection, name="api-hosts"),
    path("hosts/<int:host_id>/", hosts.host_item, name="api-host"),
    path("hosts/<int:host_id>/actions/<slug:action>/", hosts.host_action, name="api-host-action"),
    path("vms/", vms.vm_collection, name="api-vms"),
    path("vms/actions/<slug:action>/", vms.vm_bulk_action, name="api-vms-action"),
    path("vms/templates/", vm_catalog.template_list, name="api-vm-templates"),
    path("vms/<uuid:vm_uuid>/", vms.vm_item, name="api-vm"),
    path("vms/<uuid:vm_uuid>/actions/<slug:action>/", vms.vm_action, name="api-vm-action"),
    path("vms/<uuid:vm_uuid>/xml/", vms.vm_xml, name="api-vm-xml"),
    path("vms/<uuid:vm_uuid>/template/", vm_catalog.vm_template, name="api-vm-template"),
    path("vms/<uuid:vm_uuid>/owner/", vm_catalog.vm_owner, name="api-vm-owner"),
    path("vms/<uuid:vm_uuid>/snapshots/", vm_snapshots.snapshot_collection, name="api-vm-snapshots"),
    path("vms/<uuid:vm_uuid>/snapshots/<str:name>/", vm_snapshots.snapshot_item, name="api-vm-snapshot"),
    path(
        "vms/<uuid:vm_uuid>/snapshots/<str:name>/actions/<slug:action>/",
        vm_snapshots.snapshot_action,
        name="api-vm-snapshot-action",
    ),
    path("vms/<uuid:vm_uuid>/console/shares/", console_shares.share_collection, name="api-vm-console-shares"),
    path("vms/<uuid:vm_uuid>/console/shares/<str:username>/", console_shares.share_item, name="api-vm-console-share"),
    path(
        "vms/<uuid:vm_uuid>/console/shares/teams/<slug:slug>/",
        console_shares.team_share_item,
        name="api-vm-console-team-share",
    ),
    path("vms/<uuid:vm_uuid>/console/", consoles.vm_console, name="api-vm-console"),
    path("teams/", teams.team_collection, name="api-teams"),
    path("teams/<slug:slug>/", teams.team_item, name="api-team"),
    path("teams/<slug:slug>/members/", teams.member_collection, name="api-team-members"),
    path("teams/<slug:slug>/members/<str:username>/", teams.member_item, name="api-team-member"),
    path("operations/", operations.operation_list, name="api-operations"),
    path("operations/<int:op_id>/", operations.operation_detail, name="api-operation"),
    path("stats/<str:kind>/<str:key>/", stats.stats_series, name="api-stats"),
    path("volumes/", volumes.volume_collection, name="api-volumes"),
    path("volumes/<int:volume_id>/", volumes.volume_item, name="api-volume"),
    path("volumes/<int:volume_id>/actions/<slug:action>/", volumes.volume_action, name="api-volume-action"),
    path("volumes/<int:volume_id>/download/", volumes.volume_download, name="api-volume-download"),
    path("volumes/uploads/<int:op_id>/cancel/", volumes.upload_cancel, name="api-upload-cancel"),
    path("pools/<int:pool_id>/upload/", volumes.pool_upload, name="api-pool-upload"),
    path("networks/", networks.network_collection, name="api-networks"),
    path("networks/<int:network_id>/", networks.network_item, name="api-network"),
    path("networks/<int:network_id>/xml/", networks.network_xml, name="api-network-xml"),
    path("networks/<int:network_id>/actions/<slug:action>/", networks.network_action, name="api-network-action"),
    path("pools/", storage.pool_collection, name="api-pools"),
    path("pools/<int:pool_id>/", storage.pool_item, name="api-pool"),
    path("pools/<int:pool_id>/actions/<slug:action>/", storage.pool_action, name="api-pool-action"),
    path("networks/<int:network_id>/leases/", network_dhcp.lease_list, name="api-network-leases"),
    path(
        "networks/<int:network_id>/reservations/",
        network_dhcp.reservation_collection,
        name="api-network-reservations",
    ),
    path(
        "networks/<int:network_id>/reservations/<str:mac>/",
        network_dhcp.reservation_item,
        name="api-network-reservation",
    ),
]
