from django.apps import AppConfig


class StorageConfig(AppConfig):
    name = "storage"
    verbose_name = "Storage"

    def ready(self) -> None:
        from storage import pools, uploads, volumes  # noqa: F401  (registers the pool and volume operation kinds)
