from django.apps import AppConfig


class HostsConfig(AppConfig):
    name = "hosts"
    verbose_name = "Hosts"

    def ready(self) -> None:
        from django.conf import settings

        from hosts import handlers  # noqa: F401  (registers the host operation kinds)
        from kvmweb import virt

        # The adapter knows no Django: hand it the settings it needs once per process.
        virt.configure(open_timeout=settings.KVMWEB_LIBVIRT_OPEN_TIMEOUT)
