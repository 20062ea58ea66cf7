from django.apps import AppConfig


class VmsConfig(AppConfig):
    name = "vms"
    verbose_name = "Virtual machines"

    def ready(self) -> None:
        from vms import clone, delete, edit, handlers, provision, snapshots, xml_editor  # noqa: F401  (register the VM operation kinds)
