"""What a create or clone has made on a host so far, and removing it again when a later step fails.

Every volume and definition is written down as soon as it exists; on failure they are removed newest
first, and the failure says which step broke and what was cleaned up. Nothing that existed before
the operation is ever touched.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

from kvmweb import virt
from kvmweb.errors import KvmwebError
from kvmweb.operations.services import Progress
from kvmweb.virt import volumes

log = logging.getLogger(__name__)


@dataclass
class Undo:
    target: virt.HostTarget
    volumes: list[str] = field(default_factory=list)
    domain: str | None = None

    def run(self) -> list[str]:
        """Remove everything recorded; returns what could not be removed, in words."""
        left: list[str] = []
        if self.domain is not None:
            try:
                with contextlib.suppress(virt.InvalidOperation, virt.NotFound):
                    virt.destroy_domain(self.target, self.domain)
                virt.undefine_domain(self.target, self.domain)
            except virt.NotFound:
                pass
            except virt.VirtError as exc:
                left.append(f"the definition ({exc.message})")
        for path in reversed(self.volumes):
            try:
                volumes.delete_volume(self.target, path)
            except virt.VirtError as exc:
                left.append(f"{path} ({exc.message})")
        return left

    def failed(self, exc: Exception, doing: str) -> Exception:
        """Clean up, then `exc` as the operation's failure, saying what broke and what was removed.

        libvirt's own text stays with a libvirt failure (the operation page shows it under the
        message); any other unexpected fault is logged with its traceback for the operator.
        """
        made = bool(self.volumes or self.domain)
        left = self.run()
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if left:
            tail = f" Could not remove: {', '.join(left)}; remove them by hand."
        elif made:
            tail = " Everything it had made was removed."
        else:
            tail = " Nothing was left behind."
        message = f"{doing}: {reason}{tail}"
        if isinstance(exc, virt.VirtError):
            return virt.VirtError(message, code=exc.code, raw=exc.raw)
        if not isinstance(exc, KvmwebError):
            log.error("%s", doing, exc_info=exc)
        return KvmwebError(message)


class Step:
    """Names the step under way, so a failure can say where it happened."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.name = "checking the request"

    def __call__(self, percent: int, name: str) -> None:
        self.name = name[0].lower() + name[1:]
        self.progress(percent, name)
