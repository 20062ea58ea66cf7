from django.apps import AppConfig


class NetworksConfig(AppConfig):
    name = "networks"
    verbose_name = "Networks"

    def ready(self) -> None:
        # Registers the operation kinds: network.* (define, actions) and network.reservation-* (DHCP).
        from networks import actions, dhcp_reservations  # noqa: F401
