"""Make a fresh install usable: an administrator account and the local libvirt host."""

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from hosts.models import Host
from hosts.services import HostInput, host_create
from kvmweb import virt
from kvmweb.actors import SYSTEM

LOCAL_URI = "qemu:///system"
SIMULATED_URI = "test:///default"


class Command(BaseCommand):
    help = "Create the admin account (password from KVMWEB_ADMIN_PASSWORD or generated) and register the local host."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default=os.environ.get("KVMWEB_ADMIN_USER", "admin"))
        parser.add_argument("--no-host", action="store_true", help="Do not register a local host.")

    def handle(self, *args: Any, username: str, no_host: bool, **options: Any) -> None:
        self._ensure_admin(username)
        if not no_host:
            self._ensure_local_host()

    def _ensure_admin(self, username: str) -> None:
        User = get_user_model()
        wanted = os.environ.get("KVMWEB_ADMIN_PASSWORD", "")
        user = User.objects.filter(username=username).first()
        if user is not None and not wanted:
            self.stdout.write(f"Admin account: {username} (exists; password unchanged)")
            return
        password = wanted or secrets.token_urlsafe(12)
        if user is None:
            user = User.objects.create_superuser(username=username, email="", password=password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        shown = "(from KVMWEB_ADMIN_PASSWORD)" if wanted else password
        self.stdout.write(self.style.SUCCESS(f"Admin account: {username}  password: {shown}"))

    def _ensure_local_host(self) -> None:
        if Host.objects.filter(uri__in=[LOCAL_URI, SIMULATED_URI]).exists():
            self.stdout.write("Local host: already registered")
            return
        try:
            virt.get_host_info(virt.HostTarget(uri=LOCAL_URI))
        except virt.VirtError as exc:
            self.stdout.write(
                self.style.WARNING(
                    f"No libvirtd answers at {LOCAL_URI} ({exc.message}); registering the simulated "
                    f"{SIMULATED_URI} host instead. Its VMs are not real."
                )
            )
            name, uri = "simulated", SIMULATED_URI
        else:
            name, uri = "local", LOCAL_URI
        with transaction.atomic():
            host, _ = host_create(actor=SYSTEM, data=HostInput(name=name, uri=uri))
        self.stdout.write(self.style.SUCCESS(f"Local host: {host.name} ({host.uri}) registered; a worker contacts it."))
