"""pytest fixtures of the network tests (issue 8), registered for every layer by tests/conftest.py.
The helpers they use are in tests/lab/network.py.

- ``lab_net``: the lab's networking (scripts/lab/net.sh up), a LabNet with its names and addresses.
- ``net_guests``: makes tiny guests with NICs, removed afterwards.
- ``lab_networks``: names of libvirt networks a test makes by other means (append them), removed afterwards.
- ``network_api``: a NetworkApi (an administrator's REST client on a host row for the lab, with a real
  worker); every network it asked for is stopped and undefined afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmweb.virt.xml import NicSpec
from tests.lab.errors import LabError
from tests.lab.guests import Guest, ensure_guest, remove_guest, unique_guest_name
from tests.lab.hosts import LabHost
from tests.lab.network import (
    NET_GUEST_MEMORY_MIB,
    LabNet,
    NetGuestFactory,
    NetworkApi,
    ensure_lab_net,
    remove_network,
)


@pytest.fixture(scope="session")
def lab_net(lab_host: LabHost) -> LabNet:
    try:
        return ensure_lab_net()
    except LabError as exc:
        pytest.fail(f"the lab's networking did not come up (scripts/lab/net.sh up):\n{exc}", pytrace=False)


@pytest.fixture
def net_guests(lab_host: LabHost) -> Iterator[NetGuestFactory]:
    """Make tiny guests with NICs: ``net_guests("nat", NicSpec(...), ...)``; all removed afterwards.

    A guest is defined and started, not waited for (wait with ``guest.wait_for_marker()`` or
    ``wait_for_nic_address()``), so that several guests boot at the same time.
    """
    made: list[str] = []

    def make(base: str, *nics: NicSpec) -> Guest:
        name = unique_guest_name(base)
        made.append(name)
        remove_guest(lab_host, name)
        return ensure_guest(
            lab_host, name, data_disk=False, start=True, wait=False, nics=nics, memory_mib=NET_GUEST_MEMORY_MIB
        )

    yield make
    for name in made:
        remove_guest(lab_host, name)


@pytest.fixture
def lab_networks(lab_host: LabHost) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        remove_network(lab_host, name)


@pytest.fixture
def network_api(worker: Path, lab_host: LabHost, lab_net: LabNet, transactional_db: None) -> Iterator[NetworkApi]:
    api = NetworkApi.for_lab(lab_host, log=worker)
    yield api
    api.remove_networks()
