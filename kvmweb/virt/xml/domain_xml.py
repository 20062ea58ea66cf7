"""Turn a DomainSpec into libvirt domain XML with ElementTree (never string formatting)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from kvmweb.virt.xml.bandwidth import bandwidth_element
from kvmweb.virt.xml.domain_spec import (
    DiskSpec,
    DomainSpec,
    NicSpec,
    SerialSpec,
    VncSpec,
)

_X86 = ("x86_64", "i686")
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"


def build_domain_xml(spec: DomainSpec) -> str:
    """Return the libvirt XML for ``spec``, indented, ending with a newline."""
    root = ET.Element("domain", type=spec.domain_type)
    _text(root, "name", spec.name)
    if spec.uuid is not None:
        _text(root, "uuid", spec.uuid.lower())
    if spec.description is not None:
        _text(root, "description", spec.description)
    _memory(root, spec.memory_mib)
    _text(root, "vcpu", str(spec.vcpus), placement="static")
    root.append(_os(spec))
    root.append(_features(spec))
    if spec.domain_type == "kvm":
        # host-model gives the guest the host's CPU features while staying migratable between
        # hosts of the same CPU generation, unlike host-passthrough.
        ET.SubElement(root, "cpu", mode="host-model")
    ET.SubElement(root, "clock", offset="utc")
    _text(root, "on_poweroff", "destroy")
    _text(root, "on_reboot", "restart")
    _text(root, "on_crash", "destroy")
    root.append(_devices(spec))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element


def _memory(root: ET.Element, memory_mib: int) -> None:
    kib = str(memory_mib * 1024)
    _text(root, "memory", kib, unit="KiB")
    _text(root, "currentMemory", kib, unit="KiB")


def _os(spec: DomainSpec) -> ET.Element:
    os_element = ET.Element("os")
    if spec.firmware == "uefi":
        # libvirt picks a matching OVMF/AAVMF build and creates the NVRAM file itself.
        os_element.set("firmware", "efi")
    os_type = _text(os_element, "type", "hvm", arch=spec.arch)
    if spec.machine is not None:
        os_type.set("machine", spec.machine)
    if spec.kernel is None:
        for device in spec.boot:
            ET.SubElement(os_element, "boot", dev=device)
        return os_element
    _text(os_element, "kernel", spec.kernel)
    if spec.initrd is not None:
        _text(os_element, "initrd", spec.initrd)
    if spec.cmdline is not None:
        _text(os_element, "cmdline", spec.cmdline)
    return os_element


def _features(spec: DomainSpec) -> ET.Element:
    # Without ACPI a guest ignores the power button, so a graceful shutdown would never finish.
    features = ET.Element("features")
    ET.SubElement(features, "acpi")
    if spec.arch in _X86:
        ET.SubElement(features, "apic")
    return features


def _devices(spec: DomainSpec) -> ET.Element:
    devices = ET.Element("devices")
    devices.extend(_disk(disk) for disk in spec.disks)
    devices.extend(_interface(nic) for nic in spec.nics)
    if spec.serial is not None:
        devices.extend(_serial_and_console(spec.serial))
    if spec.guest_agent:
        devices.append(_guest_agent_channel())
    if spec.graphics is not None:
        # A tablet reports absolute pointer positions, so the browser's cursor and the guest's
        # stay aligned in noVNC.
        ET.SubElement(devices, "input", type="tablet", bus="usb")
        devices.append(_vnc(spec.graphics))
        video = ET.SubElement(devices, "video")
        ET.SubElement(video, "model", type="vga")
    # libvirt adds a balloon to every qemu guest unless told "none" explicitly.
    ET.SubElement(devices, "memballoon", model="virtio" if spec.balloon else "none")
    if spec.rng:
        rng = ET.SubElement(devices, "rng", model="virtio")
        _text(rng, "backend", "/dev/urandom", model="random")
    return devices


def disk_element(disk: DiskSpec) -> ET.Element:
    """The ``<disk>`` element for ``disk``, exactly as ``build_domain_xml`` writes it (for hotplug)."""
    return _disk(disk)


def interface_element(nic: NicSpec) -> ET.Element:
    """The ``<interface>`` element for ``nic``, exactly as ``build_domain_xml`` writes it (for hotplug)."""
    return _interface(nic)


def _disk(disk: DiskSpec) -> ET.Element:
    source_type = "volume" if disk.volume is not None else "file"
    element = ET.Element("disk", type=source_type, device=disk.device)
    ET.SubElement(element, "driver", name="qemu", type=disk.format)
    source = None
    if disk.source_file is not None:
        source = ET.SubElement(element, "source", file=disk.source_file)
    elif disk.pool is not None and disk.volume is not None:
        source = ET.SubElement(element, "source", pool=disk.pool, volume=disk.volume)
    if source is not None and disk.encryption_secret is not None:
        # Inside <source> (libvirt >= 5.10), where it describes this image rather than the whole disk.
        encryption = ET.SubElement(source, "encryption", format="luks")
        ET.SubElement(encryption, "secret", type="passphrase", uuid=disk.encryption_secret)
    ET.SubElement(element, "target", dev=disk.target_dev, bus=disk.bus)
    if disk.readonly or disk.device == "cdrom":
        ET.SubElement(element, "readonly")
    return element


def _interface(nic: NicSpec) -> ET.Element:
    kind = "network" if nic.network is not None else "bridge"
    element = ET.Element("interface", type=kind)
    if nic.mac is not None:
        ET.SubElement(element, "mac", address=nic.mac.lower())
    source = ET.SubElement(element, "source")
    if nic.network is not None:
        source.set("network", nic.network)
        if nic.portgroup is not None:
            source.set("portgroup", nic.portgroup)
    elif nic.bridge is not None:
        source.set("bridge", nic.bridge)
    ET.SubElement(element, "model", type=nic.model)
    if nic.bandwidth is not None and not nic.bandwidth.empty:
        element.append(bandwidth_element(nic.bandwidth))
    if nic.link != "up":  # up is libvirt's default: written only when it differs
        ET.SubElement(element, "link", state=nic.link)
    return element


def _serial_and_console(serial: SerialSpec) -> list[ET.Element]:
    port = ET.Element("serial", type="pty")
    if serial.log_file is not None:
        # append='on' keeps earlier boots' output, which is what someone debugging a guest wants.
        ET.SubElement(port, "log", file=serial.log_file, append="on")
    ET.SubElement(port, "target", port="0")
    console = ET.Element("console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")
    return [port, console]


def _guest_agent_channel() -> ET.Element:
    channel = ET.Element("channel", type="unix")
    ET.SubElement(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
    return channel


def _vnc(vnc: VncSpec) -> ET.Element:
    # The listen is given only as a child element: libvirt's schema refuses sharePolicy next to
    # the older socket attribute, and libvirt fills that attribute in from the child anyway.
    graphics = ET.Element("graphics", type="vnc")
    if vnc.auto_socket:
        # libvirt puts the socket in the guest's private directory, where only it and root can reach.
        graphics.set("sharePolicy", vnc.share_policy)
        ET.SubElement(graphics, "listen", type="socket")
        return graphics
    if vnc.socket is not None:
        graphics.set("sharePolicy", vnc.share_policy)
        ET.SubElement(graphics, "listen", type="socket", socket=vnc.socket)
        return graphics
    graphics.set("port", "-1" if vnc.autoport else str(vnc.port))
    graphics.set("autoport", "yes" if vnc.autoport else "no")
    graphics.set("sharePolicy", vnc.share_policy)
    ET.SubElement(graphics, "listen", type="address", address=vnc.listen_address or "")
    return graphics
