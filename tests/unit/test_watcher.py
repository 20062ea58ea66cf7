"""The watcher's host loop: events become rows and messages, connections come and go, hosts are added and removed.

The adapter is stood in by ``FakeHost`` (records the test sets, events the test sends, a connection
the test can drop); everything else is real: the ORM in the watcher's database threads, the
services, and the channel layer (in memory here) that carries the messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.db import connections

from hosts.models import Host
from hosts.watcher.backoff import Backoff
from hosts.watcher.executors import DaemonExecutor, run_db
from hosts.watcher.host import HostWatcher
from hosts.watcher.plan import HostSpec
from hosts.watcher.supervisor import Supervisor
from kvmweb import virt
from kvmweb.realtime import groups
from networks.models import Network
from storage.models import StoragePool
from tests.factories import make_host, make_user, make_vm
from vms.models import VirtualMachine

pytestmark = pytest.mark.django_db(transaction=True)

SIMULATED = virt.HostTarget(uri="test:///default")


def domain(uuid: str, name: str, state: str = "running", reason: str = "booted", **fields: Any) -> virt.DomainRecord:
    values: dict[str, Any] = {
        "uuid": uuid,
        "name": name,
        "state": state,
        "reason": reason,
        "id": None if state == "shutoff" else 7,
        "vcpus": 1,
        "memory_kib": 196608,
        "max_memory_kib": 196608,
        "autostart": False,
        "persistent": True,
        "xml": f"<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid></domain>",
        "has_managed_save": False,
        "title": None,
        "description": None,
        "security_label": None,
        "security_model": None,
        "os_type": "hvm",
        "arch": "x86_64",
        "domain_type": "kvm",
    }
    return virt.DomainRecord(**{**values, **fields})


def network(uuid: str, name: str, active: bool = True) -> virt.NetworkRecord:
    return virt.NetworkRecord(
        uuid=uuid, name=name, active=active, autostart=False, persistent=True, bridge="virbr9",
        forward_mode="nat", xml=f"<network><name>{name}</name></network>",
    )  # fmt: skip


def pool(uuid: str, name: str, state: str = "running") -> virt.PoolRecord:
    return virt.PoolRecord(
        uuid=uuid, name=name, type="dir", state=state, autostart=True, persistent=True, capacity=10 << 30,
        allocation=1 << 30, available=9 << 30, target_path="/var/lib/libvirt/images", xml="<pool type='dir'/>",
    )  # fmt: skip


def event(kind: str, uuid: str, name: str, what: str, detail: str = "") -> Any:
    return virt.VirtEvent(kind=kind, uuid=uuid, name=name, event=what, detail=detail, at=0.0)


class FakeStream:
    def __init__(self, host: FakeHost) -> None:
        self.host = host
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeHost:
    """The adapter as the watcher sees it, for one simulated host."""

    def __init__(self) -> None:
        self.domains: dict[str, virt.DomainRecord] = {}
        self.networks: dict[str, virt.NetworkRecord] = {}
        self.pools: dict[str, virt.PoolRecord] = {}
        self.volumes: list[virt.VolumeRecord] = []
        self.fetches: list[tuple[str, str]] = []
        self.inventories = 0
        self.reachable = True
        self.refusal = "Cannot connect: Connection refused"
        self.streams: list[FakeStream] = []
        self.on_event: Callable[[Any], None] | None = None
        self.on_closed: Callable[[Any], None] | None = None
        self.fetch_gate: threading.Event | None = None
        self.info = virt.get_host_info(SIMULATED)

    async def open_event_stream(self, target, on_event, on_closed, *, keepalive, open_timeout):  # type: ignore[no-untyped-def]
        assert keepalive == (5, 2) and open_timeout == 10.0
        if not self.reachable:
            raise virt.HostUnreachable(self.refusal)
        self.on_event, self.on_closed = on_event, on_closed
        self.streams.append(FakeStream(self))
        return self.streams[-1]

    def get_inventory(self, target: virt.HostTarget) -> virt.HostInventory:
        self.inventories += 1
        return virt.HostInventory(
            domains=tuple(self.domains.values()), networks=tuple(self.networks.values()),
            pools=tuple(self.pools.values()), volumes=tuple(self.volumes),
        )  # fmt: skip

    def get_host_info(self, target: virt.HostTarget) -> virt.HostInfo:
        return self.info

    def get_host_memory_params(self, target: virt.HostTarget) -> virt.KsmInfo | None:
        return None

    def _fetch(self, kind: str, table: dict[str, Any], uuid: str) -> Any:
        self.fetches.append((kind, uuid))
        if self.fetch_gate is not None:
            self.fetch_gate.wait(5)
        if uuid not in table:
            raise virt.NotFound(f"no {kind} {uuid}")
        return table[uuid]

    def get_domain_record(self, target: virt.HostTarget, uuid: str) -> virt.DomainRecord:
        return self._fetch("domain", self.domains, uuid)

    def get_network_record(self, target: virt.HostTarget, uuid: str) -> virt.NetworkRecord:
        return self._fetch("network", self.networks, uuid)

    def get_pool_record(self, target: virt.HostTarget, uuid: str) -> virt.PoolRecord:
        return self._fetch("pool", self.pools, uuid)

    def get_pool_volumes(self, target: virt.HostTarget, uuid: str) -> tuple[virt.VolumeRecord, ...]:
        if uuid not in self.pools:
            raise virt.NotFound(f"no pool {uuid}")
        return tuple(v for v in self.volumes if v.pool_uuid == uuid)

    def emit(self, kind: str, uuid: str, what: str, detail: str = "") -> None:
        assert self.on_event is not None
        self.on_event(event(kind, uuid, "?", what, detail))

    def drop(self, reason: str = "eof") -> None:
        assert self.on_closed is not None
        self.on_closed(reason)


class Inbox:
    """A channel in the layer, joined to some groups: what a browser in those groups would receive."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    @classmethod
    async def join(cls, *names: str) -> Inbox:
        layer = get_channel_layer()
        inbox = cls(await layer.new_channel())
        for name in names:
            await layer.group_add(name, inbox.channel)
        return inbox

    async def next(self, timeout: float = 2.0) -> dict[str, Any]:
        event = await asyncio.wait_for(get_channel_layer().receive(self.channel), timeout)
        assert event["type"] == "event.forward"
        message: dict[str, Any] = event["message"]
        return message

    async def next_of(self, kind: str, timeout: float = 2.0, **fields: Any) -> dict[str, Any]:
        """The next message of type ``kind`` whose top-level ``fields`` match."""
        while True:
            message = await self.next(timeout)
            if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
                return message

    async def nothing(self, timeout: float = 0.2) -> bool:
        try:
            message = await self.next(timeout)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected message {message}")


@pytest.fixture
async def db_threads() -> AsyncIterator[DaemonExecutor]:
    executor = DaemonExecutor("test-db", 2, on_exit=connections.close_all)
    yield executor
    executor.shutdown(wait=True)


async def orm(executor: DaemonExecutor, fn: Callable[[], Any]) -> Any:
    return await run_db(executor, fn)


@contextlib.asynccontextmanager
async def watching(fake: FakeHost, host: Host, db: DaemonExecutor) -> AsyncIterator[HostWatcher]:
    spec = HostSpec(id=host.pk, name=host.name, target=SIMULATED)
    watcher = HostWatcher(spec, db=db, api=fake, backoff=Backoff(initial=0.01, maximum=0.05, jitter=0))
    watcher.start()
    try:
        await asyncio.wait_for(watcher.connected.wait(), 5)
        yield watcher
    finally:
        await watcher.stop()


async def settle(watcher: HostWatcher) -> None:
    await watcher.coalescer.idle()


def row(uuid: str) -> VirtualMachine:
    return VirtualMachine.objects.get(uuid=uuid)


# -- events become rows and messages ------------------------------------------------------------


async def test_guest_defined_outside_kvmweb_appears_unowned_and_admins_are_told(db_threads):  # type: ignore[no-untyped-def]
    host = await orm(db_threads, lambda: make_host("sim"))
    fake, new = FakeHost(), str(uuidlib.uuid4())
    admins = await Inbox.join(groups.ADMINS)
    async with watching(fake, host, db_threads) as watcher:
        fake.domains[new] = domain(new, "web-1", state="shutoff", reason="unknown")
        fake.emit("domain", new, "defined", "added")
        await settle(watcher)
        message = await admins.next_of("vm.state")
    vm = await orm(db_threads, lambda: row(new))
    assert (vm.name, vm.state, vm.owner_id, vm.host_id) == ("web-1", "shutoff", None, host.pk)
    assert message == {
        "type": "vm.state",
        "v": 1,
        "vm": new,
        "host": host.pk,
        "name": "web-1",
        "state": "shutoff",
        "state_label": "Shut off",
        "reason": "unknown",
        "vcpus": 1,
        "memory_kib": 196608,
        "autostart": False,
        "version": 1,
    }


async def test_stopped_guest_becomes_shutoff_with_its_reason_and_its_owner_is_told(db_threads):  # type: ignore[no-untyped-def]
    host = await orm(db_threads, lambda: make_host("sim"))
    alice = await orm(db_threads, lambda: make_user("alice"))
    vm = await orm(db_threads, lambda: make_vm(host, "web", owner=alice, state="running"))
    uuid = str(vm.uuid)
    fake = FakeHost()
    fake.domains[uuid] = domain(uuid, "web")
    inbox = await Inbox.join(groups.user_group(alice.pk))
    async with watching(fake, host, db_threads) as watcher:
        await settle(watcher)
        fake.domains[uuid] = domain(uuid, "web", state="shutoff", reason="destroyed")
        fake.emit("domain", uuid, "stopped", "destroyed")
        await settle(watcher)
        message = await inbox.next_of("vm.state", state="shutoff")
    assert (message["state"], message["reason"], message["state_label"]) == ("shutoff", "destroyed", "Shut off")
    after = await orm(db_threads, lambda: row(uuid))
    assert (after.state, after.state_reason, after.owner_id) == ("shutoff", "destroyed", alice.pk)
    assert after.version == message["version"] > vm.version


async def test_transient_guest_that_stops_is_gone_but_its_row_stays(db_threads):  # type: ignore[no-untyped-def]
    host = await orm(db_threads, lambda: make_host("sim"))
    fake, uuid = FakeHost(), str(uuidlib.uuid4())
    fake.domains[uuid] = domain(uuid, "scratch", persistent=False)
    admins = await Inbox.join(groups.ADMINS)
    async with watching(fake, host, db_threads) as watcher:
        assert (await orm(db_threads, lambda: row(uuid))).state == "running"
        del fake.domains[uuid]  # a transient domain that stops is undefined with it
        fake.emit("domain", uuid, "stopped", "shutdown")
        fake.emit("domain", uuid, "undefined", "removed")
        await settle(watcher)
        message = await admins.next_of("vm.state", state="gone")
    gone = await orm(db_threads, lambda: row(uuid))
    assert (gone.state, gone.name) == ("gone", "scratch") and gone.gone_since is not None
    assert message["vm"] == uuid and message["state_label"] == "Gone"


async def test_owner_is_kept_when_the_guest_is_renamed_or_redefined_outside_kvmweb(db_threads):  # type: ignore[no-untyped-def]
    host = await orm(db_threads, lambda: make_host("sim"))
    alice = await orm(db_threads, lambda: make_user("alice"))
    vm = await orm(db_threads, lambda: make_vm(host, "old-name", owner=alice, state="shutoff"))
    uuid = str(vm.uuid)
    fake = FakeHost()
    fake.domains[uuid] = domain(uuid, "old-name", state="shutoff", reason="shutdown")
    async with watching(fake, host, db_threads) as watcher:
        await settle(watcher)
        fake.domains[uuid] = domain(uuid, "new-name", state="shutoff", reason="shutdown")
        fake.emit("domain", uuid, "undefined", "renamed")
        fake.emit("domain", uuid, "defined", "renamed")
        await settle(watcher)
        renamed = await orm(db_threads, lambda: row(uuid))
        fake.domains[uuid] = domain(uuid, "new-name", state="shutoff", reason="shutdown", vcpus=4)
        fake.emit("domain", uuid, "defined", "updated")
        await settle(watcher)
    redefined = await orm(db_threads, lambda: row(uuid))
    assert (renamed.name, renamed.owner_id) == ("new-name", alice.pk)
    assert (redefined.vcpus, redefined.owner_id, redefined.pk) == (4, alice.pk, vm.pk)
    assert await orm(db_threads, lambda: VirtualMachine.objects.count()) == 1


async def test_event_that_changes_nothing_sends_no_message(db_threads):  # type: ignore[no-untyped-def]
    host = await orm(db_threads, lambda: make_host("sim"))
    fake, uuid = FakeHost(), str(uuidlib.uuid4())
    fake.domains[uuid] = domain(uuid, "web")
    async with watching(fake, host, db_threads) as watcher:
        await settle(watcher)
        admins = await Inbox.join(groups.ADMINS)
        fake.emit("domain", uuid, "reboot")
        await settle(watcher)
        assert await admins.nothing()


async def test_network_and_pool_events_update_their_rows(db_threads):  # type: ignore[no-untyped-def]
    host = await orm(db_threads, lambda: make_host("sim"))
    fake, net, store = FakeHost(), str(uuidlib.uuid4()), str(uuidlib.uuid4())
    fake.networks[net] = network(net, "lan", active=True)
    fake.pools[store] = pool(store, "images")
    inbox = await Inbox.join(groups.host_group(host.pk))
    async with watching(fake, host, db_threads) as watcher:
        fake.networks[net] = network(net, "lan", active=False)
        fake.emit("network", net, "stopped")
        del fake.pools[store]
        fake.emit("pool", store, "undefined")
        await settle(watcher)
        messages: dict[str, dict[str, Any]] = {}
        # The connect's reconcile already pushed the new pool (not gone); the event's message comes after it.
        while len(messages) < 2 or not messages["pool.state"]["pool"]["gone"]:
            message = await inbox.next()
            if message["type"] in ("network.state", "pool.state"):
                messages[message["type"]] = message
    assert messages["network.state"]["network"] == {
        "id": messages["network.state"]["network"]["id"], "host": host.pk, "uuid": net, "name": "lan",
        "active": False, "autostart": False, "persistent": True, "gone": False,
    }  # fmt: skip
    assert messages["pool.state"]["pool"]["gone"] is True
    lan = await orm(db_threads, lambda: Network.objects.get(uuid=net))
    images = await orm(db_threads, lambda: StoragePool.objects.get(uuid=store))
    assert (lan.active, lan.gone_since) == (False, None)
    assert images.gone_since is not None and images.state == "inactive"


def volume(pool_uuid: str, name: str, capacity: int = 1 << 30) -> virt.VolumeRecord:
    return virt.VolumeRecord(
        pool_uuid=pool_uuid, name=name, key=f"/images/{name}", path=f"/images/{name}", type="file", format="qcow2",
        capacity=capacity, allocation=0, backing_path=None,
    )  # fmt: skip


async def test_pool_refresh_event_updates_its_volumes(db_threads):  # type: ignore[no-untyped-def]
    from storage.models import Volume

    host = await orm(db_threads, lambda: make_host("sim"))
    fake, store = FakeHost(), str(uuidlib.uuid4())
    fake.pools[store] = pool(store, "images")
    fake.volumes = [volume(store, "a.qcow2")]
    async with watching(fake, host, db_threads) as watcher:
        inbox = await Inbox.join(groups.host_group(host.pk))
        fake.volumes = [volume(store, "a.qcow2", capacity=2 << 30), volume(store, "b.qcow2")]
        fake.emit("pool", store, "refresh")
        await settle(watcher)
        message = await inbox.next_of("pool.state")
    sizes = await orm(db_threads, lambda: dict(Volume.objects.values_list("name", "capacity")))
    assert sizes == {"a.qcow2": 2 << 30, "b.qcow2": 1 << 30}
    assert message["pool"]["uuid"] == store


async def test_burst_of_events_for_one_guest_costs_one_fetch_and_one_message(db_threads):  # type: ignore[no-untyped-def]
    host = await orm(db_threads, lambda: make_host("sim"))
    fake, uuid = FakeHost(), str(uuidlib.uuid4())
    fake.domains[uuid] = domain(uuid, "web", state="shutoff", reason="shutdown")
    async with watching(fake, host, db_threads) as watcher:
        await settle(watcher)
        fake.fetches.clear()
        admins = await Inbox.join(groups.ADMINS)
        fake.domains[uuid] = domain(uuid, "web")
        for what in ("resumed", "started", "defined", "resumed"):  # what `virsh start` can send at once
            fake.emit("domain", uuid, what)
        await settle(watcher)
        message = await admins.next_of("vm.state")
        assert await admins.nothing()
    assert fake.fetches == [("domain", uuid)]
    assert message["state"] == "running"


async def test_events_while_a_fetch_runs_cause_one_more_fetch_and_only_the_newest_state_is_sent(db_threads):  # type: ignore[no-untyped-def]
    host = await orm(db_threads, lambda: make_host("sim"))
    fake, uuid = FakeHost(), str(uuidlib.uuid4())
    fake.domains[uuid] = domain(uuid, "web")
    async with watching(fake, host, db_threads) as watcher:
        await settle(watcher)
        fake.fetches.clear()
        admins = await Inbox.join(groups.ADMINS)
        fake.fetch_gate = threading.Event()
        fake.domains[uuid] = domain(uuid, "web", state="paused", reason="user")
        fake.emit("domain", uuid, "suspended", "paused")
        while not fake.fetches:  # the first fetch is in the libvirt thread now
            await asyncio.sleep(0.001)
        fake.domains[uuid] = domain(uuid, "web", state="running", reason="unpaused")
        for _ in range(3):
            fake.emit("domain", uuid, "resumed", "unpaused")
        fake.fetch_gate.set()
        await settle(watcher)
        message = await admins.next_of("vm.state")
        assert await admins.nothing()
    assert fake.fetches == [("domain", uuid), ("domain", uuid)]
    assert (message["state"], message["reason"]) == ("running", "unpaused")


class RealDriver(FakeHost):
    """libvirt's test:///default driver for everything but the event connection, which the test drives."""

    def get_inventory(self, target: virt.HostTarget) -> virt.HostInventory:
        self.inventories += 1
        return virt.get_inventory(target)

    def get_domain_record(self, target: virt.HostTarget, uuid: str) -> virt.DomainRecord:
        self.fetches.append(("domain", uuid))
        return virt.get_domain_record(target, uuid)


async def test_real_driver_records_follow_a_guest_through_define_start_stop_and_undefine(db_threads):  # type: ignore[no-untyped-def]
    host = await orm(db_threads, lambda: make_host("sim"))
    fake = RealDriver()
    name = f"watch-{uuidlib.uuid4().hex[:8]}"
    xml = (
        f"<domain type='test'><name>{name}</name><memory unit='KiB'>65536</memory><vcpu>2</vcpu>"
        "<os><type>hvm</type></os></domain>"
    )
    admins = await Inbox.join(groups.ADMINS)
    async with watching(fake, host, db_threads) as watcher:
        summary = virt.define_domain(SIMULATED, xml)
        uuid = summary.uuid
        try:
            fake.emit("domain", uuid, "defined", "added")
            await settle(watcher)
            defined = await admins.next_of("vm.state", vm=uuid)
            virt.start_domain(SIMULATED, uuid)
            fake.emit("domain", uuid, "started", "booted")
            await settle(watcher)
            started = await admins.next_of("vm.state", vm=uuid)
            virt.destroy_domain(SIMULATED, uuid)
            fake.emit("domain", uuid, "stopped", "destroyed")
            await settle(watcher)
            stopped = await admins.next_of("vm.state", vm=uuid)
        finally:
            virt.undefine_domain(SIMULATED, uuid)
        fake.emit("domain", uuid, "undefined", "removed")
        await settle(watcher)
        gone = await admins.next_of("vm.state", vm=uuid)
    assert [(m["state"], m["reason"]) for m in (defined, started, stopped, gone)] == [
        ("shutoff", "unknown"), ("running", "booted"), ("shutoff", "destroyed"), ("gone", ""),
    ]  # fmt: skip
    assert [m["version"] for m in (defined, started, stopped, gone)] == [1, 2, 3, 4]
    vm = await orm(db_threads, lambda: row(uuid))
    assert (vm.name, vm.vcpus, vm.memory_kib, vm.domain_type, vm.owner_id) == (name, 2, 65536, "test", None)


async def test_a_host_hung_in_libvirt_does_not_delay_another_hosts_events(db_threads):  # type: ignore[no-untyped-def]
    slow_host = await orm(db_threads, lambda: make_host("slow"))
    quick_host = await orm(db_threads, lambda: make_host("quick"))
    slow, quick = FakeHost(), FakeHost()
    hung, moved = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    slow.domains[hung] = domain(hung, "hung")
    quick.domains[moved] = domain(moved, "moved")
    admins = await Inbox.join(groups.ADMINS)
    async with watching(slow, slow_host, db_threads) as w_slow, watching(quick, quick_host, db_threads) as w_quick:
        await settle(w_slow)
        await settle(w_quick)
        slow.fetch_gate = threading.Event()  # the slow host's libvirt calls now hang
        slow.emit("domain", hung, "suspended", "paused")
        quick.domains[moved] = domain(moved, "moved", state="paused", reason="user")
        quick.emit("domain", moved, "suspended", "paused")
        message = await admins.next_of("vm.state", vm=moved, state="paused")
        assert message["host"] == quick_host.pk and slow.fetches == [("domain", hung)]
        slow.fetch_gate.set()


# -- connections come and go --------------------------------------------------------------------


async def test_lost_connection_marks_host_unreachable_then_reconnects_and_reconciles(db_threads):  # type: ignore[no-untyped-def]
    host = await orm(db_threads, lambda: make_host("sim", state="unreachable"))
    fake, kept, added = FakeHost(), str(uuidlib.uuid4()), str(uuidlib.uuid4())
    fake.domains[kept] = domain(kept, "kept")
    async with watching(fake, host, db_threads) as watcher:
        connected = await orm(db_threads, lambda: Host.objects.get(pk=host.pk))
        assert (connected.state, connected.libvirt_version, fake.inventories) == (
            "connected",
            fake.info.libvirt_version,
            1,
        )

        fake.reachable = False
        fake.drop("keepalive")
        await _until(lambda: not watcher.connected.is_set())
        await _until_row(db_threads, lambda: Host.objects.get(pk=host.pk).state == "unreachable")
        assert fake.streams[0].closed

        # Changes while the watcher could not see them...
        fake.domains[kept] = domain(kept, "kept", state="shutoff", reason="destroyed")
        fake.domains[added] = domain(added, "added", state="shutoff", reason="unknown")
        fake.reachable = True
        await asyncio.wait_for(watcher.connected.wait(), 5)
    # ...are caught by the reconcile after reconnecting.
    assert fake.inventories == 2 and watcher.sessions == 2
    states = await orm(db_threads, lambda: dict(VirtualMachine.objects.values_list("name", "state")))
    assert states == {"kept": "shutoff", "added": "shutoff"}
    back = await orm(db_threads, lambda: Host.objects.get(pk=host.pk))
    assert (back.state, back.last_error) == ("connected", "")


async def test_unreachable_host_is_marked_with_the_reason_and_retried(db_threads):  # type: ignore[no-untyped-def]
    host = await orm(db_threads, lambda: make_host("sim", state="connected"))
    fake = FakeHost()
    fake.reachable = False
    watcher = HostWatcher(
        HostSpec(id=host.pk, name="sim", target=SIMULATED), db=db_threads, api=fake,
        backoff=Backoff(initial=0.01, maximum=0.02, jitter=0),
    )  # fmt: skip
    watcher.start()
    try:
        await _until_row(db_threads, lambda: Host.objects.get(pk=host.pk).state == "unreachable")
        await _until(lambda: watcher.backoff.attempts >= 3)
        marked = await orm(db_threads, lambda: Host.objects.get(pk=host.pk))
        assert marked.last_error == "Cannot connect: Connection refused"
        fake.reachable = True
        await asyncio.wait_for(watcher.connected.wait(), 5)
        assert watcher.backoff.attempts == 0  # a connection that works starts the schedule again
    finally:
        await watcher.stop()


async def test_events_before_the_reconcile_has_committed_are_fetched_after_it(db_threads):  # type: ignore[no-untyped-def]
    host = await orm(db_threads, lambda: make_host("sim"))
    fake, uuid = FakeHost(), str(uuidlib.uuid4())
    hold = threading.Event()
    real_inventory = fake.get_inventory

    def slow_inventory(target: virt.HostTarget) -> virt.HostInventory:
        hold.wait(5)
        return real_inventory(target)

    fake.get_inventory = slow_inventory  # type: ignore[method-assign]
    watcher = HostWatcher(HostSpec(id=host.pk, name="sim", target=SIMULATED), db=db_threads, api=fake)
    watcher.start()
    try:
        await _until(lambda: fake.on_event is not None)
        fake.domains[uuid] = domain(uuid, "early")
        fake.emit("domain", uuid, "defined", "added")  # arrives while the inventory is being read
        assert fake.fetches == [] and watcher.coalescer.pending == {("domain", uuid)}
        hold.set()
        await asyncio.wait_for(watcher.connected.wait(), 5)
        await settle(watcher)
        assert fake.fetches == [("domain", uuid)]
    finally:
        await watcher.stop()


# -- hosts added, changed and removed -------------------------------------------------------------


class Hosts:
    """One FakeHost per URI, so a test can tell which connection a watcher uses."""

    def __init__(self) -> None:
        self.by_uri: dict[str, FakeHost] = {}

    def __getattr__(self, name: str) -> Any:
        def call(target: virt.HostTarget, *args: Any, **kwargs: Any) -> Any:
            fake = self.by_uri.setdefault(target.uri, FakeHost())
            return getattr(fake, name)(target, *args, **kwargs)

        return call


async def test_supervisor_follows_hosts_added_changed_disabled_and_removed(db_threads):  # type: ignore[no-untyped-def]
    from hosts.messages import watcher_notify

    api = Hosts()
    supervisor = Supervisor(api=api, check_every=60)
    stop = asyncio.Event()
    running = asyncio.ensure_future(supervisor.run(stop))
    try:
        await asyncio.wait_for(supervisor.listening.wait(), 5)
        one = await orm(db_threads, lambda: make_host("one", uri="test:///one.xml"))
        await orm(db_threads, lambda: watcher_notify(one.pk))  # what host_create does
        await _until(lambda: one.pk in supervisor.watchers)
        first = supervisor.watchers[one.pk]
        await asyncio.wait_for(first.connected.wait(), 5)

        await orm(db_threads, lambda: Host.objects.filter(pk=one.pk).update(name="uno"))
        await orm(db_threads, lambda: watcher_notify(one.pk))
        await _until(lambda: supervisor.watchers.get(one.pk, first).spec.name == "uno")
        assert supervisor.watchers[one.pk] is first  # a rename keeps the connection

        await orm(db_threads, lambda: Host.objects.filter(pk=one.pk).update(uri="test:///two.xml"))
        await orm(db_threads, lambda: watcher_notify(one.pk))
        await _until(lambda: supervisor.watchers.get(one.pk) not in (None, first))
        await asyncio.wait_for(supervisor.watchers[one.pk].connected.wait(), 5)
        assert api.by_uri["test:///one.xml"].streams[0].closed
        assert not api.by_uri["test:///two.xml"].streams[0].closed

        await orm(db_threads, lambda: Host.objects.filter(pk=one.pk).update(enabled=False, state="disabled"))
        await orm(db_threads, lambda: watcher_notify(one.pk))
        await _until(lambda: one.pk not in supervisor.watchers)
        await _until(lambda: api.by_uri["test:///two.xml"].streams[0].closed)
        disabled = await orm(db_threads, lambda: Host.objects.get(pk=one.pk))
        assert disabled.state == "disabled"
    finally:
        stop.set()
        await asyncio.wait_for(running, 5)


async def test_supervisor_notices_a_host_added_without_a_message_on_its_next_check(db_threads):  # type: ignore[no-untyped-def]
    supervisor = Supervisor(api=Hosts(), check_every=0.05)
    stop = asyncio.Event()
    running = asyncio.ensure_future(supervisor.run(stop))
    try:
        await _until(lambda: supervisor.syncs >= 1)
        quiet = await orm(db_threads, lambda: make_host("quiet"))  # straight into the table, no message
        await _until(lambda: quiet.pk in supervisor.watchers)
        await orm(db_threads, lambda: Host.objects.filter(pk=quiet.pk).delete())
        await _until(lambda: quiet.pk not in supervisor.watchers)
    finally:
        stop.set()
        await asyncio.wait_for(running, 5)


async def test_host_disabled_while_connecting_is_let_go_and_watched_again_once_enabled(db_threads):  # type: ignore[no-untyped-def]
    api = Hosts()
    host = await orm(db_threads, lambda: make_host("flaky"))
    fake = api.by_uri["test:///default"] = FakeHost()
    real_inventory = fake.get_inventory

    def inventory_while_disabled(target: virt.HostTarget) -> virt.HostInventory:
        # An administrator disables the host while the watcher reads its inventory.
        Host.objects.filter(pk=host.pk).update(enabled=False, state="disabled")
        connections.close_all()  # this runs in the watcher's libvirt thread, which keeps no connection
        return real_inventory(target)

    fake.get_inventory = inventory_while_disabled  # type: ignore[method-assign]
    supervisor = Supervisor(api=api, check_every=60)
    stop = asyncio.Event()
    running = asyncio.ensure_future(supervisor.run(stop))
    try:
        await _until(lambda: host.pk in supervisor.watchers and supervisor.watchers[host.pk].finished)
        assert fake.streams[0].closed
        assert (await orm(db_threads, lambda: Host.objects.get(pk=host.pk))).state == "disabled"
        fake.get_inventory = real_inventory  # type: ignore[method-assign]
        await orm(db_threads, lambda: Host.objects.filter(pk=host.pk).update(enabled=True, state="unreachable"))
        await supervisor.sync()
        await asyncio.wait_for(supervisor.watchers[host.pk].connected.wait(), 5)
    finally:
        stop.set()
        await asyncio.wait_for(running, 5)


async def test_a_connection_slow_to_close_does_not_hold_up_starting_another(db_threads):  # type: ignore[no-untyped-def]
    api = Hosts()
    old = await orm(db_threads, lambda: make_host("old", uri="test:///old.xml"))
    api.by_uri["test:///old.xml"] = FakeHost()
    release = asyncio.Event()

    class HangingStream(FakeStream):
        async def close(self) -> None:  # type: ignore[override]
            await release.wait()  # a dead remote host: the close does not come back soon
            self.closed = True

    real_open = api.by_uri["test:///old.xml"].open_event_stream

    async def open_hanging(*args: Any, **kwargs: Any) -> FakeStream:
        stream = await real_open(*args, **kwargs)
        hanging = HangingStream(stream.host)
        stream.host.streams[-1] = hanging
        return hanging

    api.by_uri["test:///old.xml"].open_event_stream = open_hanging  # type: ignore[method-assign]
    supervisor = Supervisor(api=api, check_every=60)
    stop = asyncio.Event()
    running = asyncio.ensure_future(supervisor.run(stop))
    try:
        await _until(lambda: old.pk in supervisor.watchers and supervisor.watchers[old.pk].connected.is_set())
        await orm(db_threads, lambda: Host.objects.filter(pk=old.pk).update(enabled=False, state="disabled"))
        new = await orm(db_threads, lambda: make_host("new", uri="test:///new.xml"))
        await supervisor.sync()  # stops "old" (hangs) and starts "new" in one go
        await asyncio.wait_for(supervisor.watchers[new.pk].connected.wait(), 5)
        assert not api.by_uri["test:///old.xml"].streams[0].closed
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(running, 5)
    assert api.by_uri["test:///old.xml"].streams[0].closed


async def test_shutdown_closes_every_event_connection(db_threads):  # type: ignore[no-untyped-def]
    api = Hosts()
    await orm(db_threads, lambda: [make_host(f"h{i}", uri=f"test:///h{i}.xml") for i in range(3)])
    supervisor = Supervisor(api=api, check_every=60)
    stop = asyncio.Event()
    running = asyncio.ensure_future(supervisor.run(stop))
    await _until(
        lambda: len(supervisor.watchers) == 3 and all(w.connected.is_set() for w in supervisor.watchers.values())
    )
    stop.set()
    await asyncio.wait_for(running, 5)
    assert supervisor.watchers == {}
    assert all(fake.streams[-1].closed for fake in api.by_uri.values()) and len(api.by_uri) == 3


def test_host_services_tell_the_watcher_about_added_changed_and_removed_hosts(
    ada, django_capture_on_commit_callbacks, monkeypatch
):  # type: ignore[no-untyped-def]
    from hosts import messages
    from hosts.services import HostInput, host_create, host_delete, host_update
    from kvmweb.actors import Actor

    sent: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(messages, "publish", lambda audience, message: sent.append((audience, message)))
    actor = Actor(user=ada, ip=None)
    host, _ = host_create(actor=actor, data=HostInput(name="new", uri="test:///default", enabled=False))
    host_id = host.pk
    host_update(actor=actor, host=host, data=HostInput(name="new", uri="test:///other", enabled=False))
    host_delete(actor=actor, host=host, confirm_name="new")
    told = [message for audience, message in sent if audience == groups.WATCHER]
    assert told == [{"type": "host.changed", "host": host_id}] * 3


# -- helpers --------------------------------------------------------------------------------------


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


async def _until_row(executor: DaemonExecutor, check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await orm(executor, check):
            await asyncio.sleep(0.01)
