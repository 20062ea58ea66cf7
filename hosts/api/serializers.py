from rest_framework import serializers

from hosts.models import Host
from hosts.services import HostInput


class HostSerializer(serializers.ModelSerializer):
    is_simulated = serializers.BooleanField(read_only=True)

    class Meta:
        model = Host
        fields = [
            "id",
            "name",
            "uri",
            "ssh_key_path",
            "tls_pki_path",
            "console_address",
            "queue",
            "enabled",
            "state",
            "last_error",
            "last_seen",
            "libvirt_version",
            "hypervisor",
            "hypervisor_version",
            "capabilities",
            "is_simulated",
            "created",
        ]
        read_only_fields = [
            "id",
            "state",
            "last_error",
            "last_seen",
            "libvirt_version",
            "hypervisor",
            "hypervisor_version",
            "capabilities",
            "is_simulated",
            "created",
        ]


class HostWrite(serializers.Serializer):
    """Parses a create or update; hosts.services.host_check decides what is valid."""

    name = serializers.CharField(max_length=64)
    uri = serializers.CharField(max_length=512)
    ssh_key_path = serializers.CharField(max_length=512, required=False, allow_blank=True, default="")
    tls_pki_path = serializers.CharField(max_length=512, required=False, allow_blank=True, default="")
    enabled = serializers.BooleanField(required=False, default=True)
    console_address = serializers.CharField(
        max_length=253,
        required=False,
        allow_blank=True,
        default="",
        help_text="Remote hosts: the address the console proxy connects to for VNC; empty: the URI's host name.",
    )
    queue = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        default="",
        help_text="The Celery queue for the host's operations: host.<name> when a worker runs on the host; "
        "empty: the central workers.",
    )

    def to_input(self) -> HostInput:
        return HostInput(**self.validated_data)


class HostDelete(serializers.Serializer):
    confirm_name = serializers.CharField(help_text="The host's name, to confirm.")
