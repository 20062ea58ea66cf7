from rest_framework import serializers

from vms.models import VirtualMachine


class VmSerializer(serializers.ModelSerializer):
    host = serializers.PrimaryKeyRelatedField(read_only=True)
    host_name = serializers.CharField(source="host.name", read_only=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = VirtualMachine
        fields = [
            "uuid",
            "name",
            "host",
            "host_name",
            "state",
            "state_reason",
            "vcpus",
            "memory_kib",
            "max_memory_kib",
            "autostart",
            "persistent",
            "has_managed_save",
            "domain_type",
            "os_type",
            "arch",
            "title",
            "owner",
            "security_model",
            "security_label",
            "version",
            "first_seen",
            "state_changed",
            "gone_since",
            "addresses",
        ]
        read_only_fields = fields


class VmDetailSerializer(VmSerializer):
    class Meta(VmSerializer.Meta):
        fields = [*VmSerializer.Meta.fields, "description", "xml"]
        read_only_fields = fields


class VmCatalogSerializer(VmSerializer):
    """A VM as the template catalog and owner changes answer it: whether it is a template, too."""

    class Meta(VmSerializer.Meta):
        fields = [*VmSerializer.Meta.fields, "is_template"]
        read_only_fields = fields
