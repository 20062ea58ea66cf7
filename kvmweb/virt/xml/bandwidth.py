"""Traffic limits as libvirt's ``<bandwidth>`` takes them: on a network, a portgroup and a guest's NIC.

One type for all three, so the network and domain builders write the same XML and read it back the
same way. A limit that exists is valid: a bad number is a ``BandwidthRefused`` naming its field
within the direction (``average``, ``peak``, ``burst``); the caller knows where the limit sits
(``bandwidth.inbound``, ``portgroups.0.bandwidth.outbound``) and puts the two together.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from kvmweb.virt.errors import InvalidArgument
from kvmweb.virt.xml.checks import require

# libvirt's units: kB/s for rates and KiB for bursts. The kernel's traffic control takes rates in
# bytes per second as 32-bit numbers, hence the ceiling (about 34 Gbit/s).
MAX_RATE_KBPS = 4_194_303
MAX_BURST_KIB = 4_194_303
DIRECTIONS = ("inbound", "outbound")


class BandwidthRefused(InvalidArgument):
    """A refused limit; ``field`` is ``average``, ``peak`` or ``burst``."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def _check(field: str, label: str, value: object, high: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high):
        raise BandwidthRefused(f"{label} must be a whole number from 1 to {high}; got {value!r}.", field=field)


@dataclass(frozen=True, slots=True)
class Rate:
    """One direction's limit: ``average`` and ``peak`` in kB/s, ``burst`` in KiB."""

    average: int
    peak: int | None = None
    burst: int | None = None

    def __post_init__(self) -> None:
        _check("average", "Average rate (kB/s)", self.average, MAX_RATE_KBPS)
        if self.peak is not None:
            _check("peak", "Peak rate (kB/s)", self.peak, MAX_RATE_KBPS)
            if self.peak < self.average:
                raise BandwidthRefused(
                    f"The peak rate ({self.peak} kB/s) is below the average rate ({self.average} kB/s).", field="peak"
                )
        if self.burst is not None:
            _check("burst", "Burst (KiB)", self.burst, MAX_BURST_KIB)


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """Limits seen from the guests' side: ``inbound`` is what they receive.

    Neither direction means no limits (on a NIC update, an empty ``<bandwidth/>`` clears them).
    """

    inbound: Rate | None = None
    outbound: Rate | None = None

    def __post_init__(self) -> None:
        for rate in (self.inbound, self.outbound):
            require(rate is None or isinstance(rate, Rate), "A bandwidth limit must be a Rate.")

    @property
    def empty(self) -> bool:
        return self.inbound is None and self.outbound is None


def bandwidth_element(bandwidth: Bandwidth) -> ET.Element:
    """``<bandwidth>`` with an ``<inbound>`` and/or ``<outbound>``; empty when ``bandwidth`` has no limits."""
    element = ET.Element("bandwidth")
    for direction in DIRECTIONS:
        rate: Rate | None = getattr(bandwidth, direction)
        if rate is not None:
            attributes = {"average": str(rate.average)}
            if rate.peak is not None:
                attributes["peak"] = str(rate.peak)
            if rate.burst is not None:
                attributes["burst"] = str(rate.burst)
            ET.SubElement(element, direction, attributes)
    return element


def read_bandwidth(element: ET.Element | None) -> Bandwidth | None:
    """The limits in a ``<bandwidth>``; None when there are none, or numbers kvmweb would refuse (set outside it)."""
    if element is None:
        return None
    rates = {}
    for direction in DIRECTIONS:
        found = element.find(direction)
        average = _number(found, "average")
        if found is not None and average is not None:
            rates[direction] = (average, _number(found, "peak"), _number(found, "burst"))
    try:
        bandwidth = Bandwidth(**{direction: Rate(*numbers) for direction, numbers in rates.items()})
    except InvalidArgument:  # shown as no limit rather than failing the page
        return None
    return None if bandwidth.empty else bandwidth


def _number(element: ET.Element | None, name: str) -> int | None:
    value = None if element is None else element.get(name)
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else None
