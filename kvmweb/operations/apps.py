from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "kvmweb.operations"
    label = "operations"
    verbose_name = "Operations"
