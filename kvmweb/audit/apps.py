from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "kvmweb.audit"
    label = "audit"
    verbose_name = "Audit"
