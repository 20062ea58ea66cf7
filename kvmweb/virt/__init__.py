"""The libvirt adapter: the only package in kvmweb that talks to libvirt, and it knows no Django.

Everything here takes a ``HostTarget``, returns frozen dataclasses and raises ``VirtError``
subclasses; libvirt objects and ``libvirtError`` never leave the package (which is why the raw
connection helpers stay in ``kvmweb.virt.connection`` and are not exported here).

Web and worker processes call ``register_event_loop()``; the events watcher instead calls
``use_asyncio_event_loop()`` and ``open_event_stream()`` (see ``kvmweb.virt.events``). Pages read the
database, which ``get_inventory()`` and the event streams keep filled.
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
from kvmweb.virt.eventloop import EventLoopConflict, event_loop_running, register_event_loop
from kvmweb.virt.events import EventStream, open_event_stream, use_asyncio_event_loop
from kvmweb.virt.host import get_host_info
from kvmweb.virt.inventory import (
    get_domain_record,
    get_inventory,
    get_network_record,
    get_pool_record,
    get_pool_volumes,
)
from kvmweb.virt.lifecycle import (
    PowerMode,
    guest_agent_answers,
    managed_save_domain,
    managed_save_remove,
    reboot_domain,
    resume_domain,
    send_ctrl_alt_del,
    shutdown_domain,
    suspend_domain,
)
from kvmweb.virt.stats import get_domain_stats, get_host_memory_params, get_host_stats
from kvmweb.virt.target import SCHEMES, HostTarget, validate_uri
from kvmweb.virt.types import (
    DomainRecord,
    DomainState,
    DomainStats,
    DomainSummary,
    GuestCapability,
    HostInfo,
    HostInventory,
    HostStats,
    KsmInfo,
    NetworkRecord,
    NumaCell,
    PageCount,
    PoolRecord,
    SecurityModel,
    VirtEvent,
    VolumeRecord,
)

__all__ = (
    "SCHEMES",
    "AccessDenied",
    "AlreadyExists",
    "DomainRecord",
    "DomainState",
    "DomainStats",
    "DomainSummary",
    "EventLoopConflict",
    "EventStream",
    "GuestCapability",
    "HostInfo",
    "HostInventory",
    "HostStats",
    "HostTarget",
    "HostUnreachable",
    "InvalidArgument",
    "InvalidOperation",
    "KsmInfo",
    "NetworkRecord",
    "NotFound",
    "NumaCell",
    "OperationTimeout",
    "PageCount",
    "PoolRecord",
    "PowerMode",
    "SecurityModel",
    "UnsafeXML",
    "Unsupported",
    "VirtError",
    "VirtEvent",
    "VolumeRecord",
    "close_all",
    "configure",
    "define_domain",
    "destroy_domain",
    "domain_state",
    "errors",
    "event_loop_running",
    "get_domain",
    "get_domain_record",
    "get_domain_stats",
    "get_domain_xml",
    "get_host_info",
    "get_host_memory_params",
    "get_host_stats",
    "get_inventory",
    "get_network_record",
    "get_pool_record",
    "get_pool_volumes",
    "guest_agent_answers",
    "list_domains",
    "managed_save_domain",
    "managed_save_remove",
    "open_event_stream",
    "reboot_domain",
    "register_event_loop",
    "resume_domain",
    "send_ctrl_alt_del",
    "set_autostart",
    "shutdown_domain",
    "start_domain",
    "suspend_domain",
    "undefine_domain",
    "use_asyncio_event_loop",
    "validate_uri",
)
