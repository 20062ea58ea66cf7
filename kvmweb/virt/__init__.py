"""The libvirt adapter: the only package in kvmweb that talks to libvirt, and it knows no Django.

Everything here takes a ``HostTarget``, returns frozen dataclasses and raises ``VirtError``
subclasses; libvirt objects and ``libvirtError`` never leave the package (which is why the raw
connection helpers stay in ``kvmweb.virt.connection`` and are not exported here).
"""

from kvmweb.virt import errors
from kvmweb.virt.connection import close_all, configure
from kvmweb.virt.domains import (
    define_domain,
    destroy_domain,
    domain_state,
    get_domain,
    get_domain_xml,
    list_domains,
    set_autostart,
    shutdown_domain,
    start_domain,
    undefine_domain,
)
from kvmweb.virt.errors import (
    AccessDenied,
    AlreadyExists,
    HostUnreachable,
    InvalidArgument,
    InvalidOperation,
    NotFound,
    OperationTimeout,
    UnsafeXML,
    Unsupported,
    VirtError,
)
from kvmweb.virt.eventloop import event_loop_running, register_event_loop
from kvmweb.virt.host import get_host_info
from kvmweb.virt.target import SCHEMES, HostTarget, validate_uri
from kvmweb.virt.types import (
    DomainState,
    DomainSummary,
    GuestCapability,
    HostInfo,
    NumaCell,
    SecurityModel,
)

__all__ = (
    "SCHEMES",
    "AccessDenied",
    "AlreadyExists",
    "DomainState",
    "DomainSummary",
    "GuestCapability",
    "HostInfo",
    "HostTarget",
    "HostUnreachable",
    "InvalidArgument",
    "InvalidOperation",
    "NotFound",
    "NumaCell",
    "OperationTimeout",
    "SecurityModel",
    "UnsafeXML",
    "Unsupported",
    "VirtError",
    "close_all",
    "configure",
    "define_domain",
    "destroy_domain",
    "domain_state",
    "errors",
    "event_loop_running",
    "get_domain",
    "get_domain_xml",
    "get_host_info",
    "list_domains",
    "register_event_loop",
    "set_autostart",
    "shutdown_domain",
    "start_domain",
    "undefine_domain",
    "validate_uri",
)
