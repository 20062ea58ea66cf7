"""The XML editor: read a VM's persistent definition, check an edited one, diff it, and define it.

`xml_check` refuses what the user must fix before libvirt sees it: too big, not XML, entities or a
DTD (refused by defusedxml, never expanded), not a <domain>, another VM's <uuid>, another name.
Applying is the `define-xml` action: an operation `vm.define-xml` whose worker calls the adapter's
`redefine_domain_xml`; libvirt's refusal fails the operation with its message and, where it can be
found, the line it concerns at the end: "... (line 12)".
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any
from uuid import UUID

from kvmweb import virt
from kvmweb.errors import Invalid, NotVisible
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress
from kvmweb.virt import devices
from kvmweb.virt.xml import error_line, parse_xml
from vms.actions import ACTIVE, ANY_STATE, ActionSpec, action_register
from vms.handlers import vm_for_operation, vm_refresh
from vms.models import VirtualMachine

MAX_XML_BYTES = 1024 * 1024
DIFF_CONTEXT = 3
LINE_SUFFIX = re.compile(r"\s*\(line (\d+)\)\s*$")


# -- reading --------------------------------------------------------------------------------------


def vm_xml_read(*, vm: VirtualMachine, inactive: bool = True) -> str:
    """The domain XML as libvirt last reported it (no secrets): the persistent definition when `inactive`.

    Read from the row, never from the host: the events process and every operation's refresh keep
    it current. Where the persistent definition equals the live one, only the live one is stored.
    """
    if vm.is_gone:
        raise NotVisible(f"The virtual machine was not found: {vm.name} is no longer on {vm.host.name}.")
    return (vm.xml_inactive or vm.xml) if inactive else vm.xml


# -- checking -------------------------------------------------------------------------------------


def _refuse(message: str, line: int | None = None) -> Invalid:
    details: dict[str, object] = {"xml": message}
    if line is not None:
        details["line"] = line
    return Invalid(message, details=details)


def _line_of(xml: str, tag: str) -> int | None:
    """The first line holding an element `tag` (from 1)."""
    opening = re.compile(rf"<{re.escape(tag)}[\s/>]|<{re.escape(tag)}$")
    for number, line in enumerate(xml.splitlines(), start=1):
        if opening.search(line):
            return number
    return None


def xml_check(*, vm: VirtualMachine, xml: Any) -> str:
    """The edited definition if kvmweb may send it to libvirt for `vm`, else Invalid with `line` in details."""
    if not isinstance(xml, str) or not xml.strip():
        raise _refuse("Send the VM's domain XML: the definition is empty.")
    size = len(xml.encode("utf-8"))
    if size > MAX_XML_BYTES:
        raise _refuse(f"The XML is {size:,} bytes; a definition may be at most 1 MiB ({MAX_XML_BYTES:,} bytes).")
    try:
        root = parse_xml(xml)
    except virt.UnsafeXML:
        raise _refuse(
            "The XML was refused: it declares a DTD or entities (<!DOCTYPE ...> or <!ENTITY ...>), which kvmweb "
            "never expands or accepts. Remove them; libvirt's definitions never need them."
        ) from None
    except virt.InvalidArgument as exc:
        raise _refuse(exc.message, error_line(xml, exc.raw)) from None
    if root.tag != "domain":
        raise _refuse(f"Expected a <domain> definition, got <{root.tag}>.", _line_of(xml, root.tag))
    uuid_text = (root.findtext("uuid") or "").strip()
    if not uuid_text:
        raise _refuse(f"Keep the <uuid> element with {vm.uuid}: without it libvirt would make a new VM.")
    if uuid_text.lower().replace("-", "") != UUID(str(vm.uuid)).hex:
        message = f"The <uuid> must stay {vm.uuid}: another UUID would define a different VM."
        raise _refuse(message, _line_of(xml, "uuid"))
    name = (root.findtext("name") or "").strip()
    if name != vm.name:
        message = f"The <name> must stay {vm.name}: rename the VM on its own (only while it is shut off)."
        raise _refuse(message, _line_of(xml, "name"))
    return xml


def check_define_xml(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    """The `define-xml` action's check: exactly one parameter, `xml`."""
    unknown = sorted(set(given) - {"xml"})
    if unknown:
        raise Invalid(
            f"Apply XML takes no parameter {', '.join(unknown)}; it accepts: xml.",
            details={key: "Not accepted." for key in unknown},
        )
    return {"xml": xml_check(vm=vm, xml=given.get("xml"))}


def error_line_of(message: str) -> int | None:
    """The line a failed `vm.define-xml` operation's error ends with, or None."""
    match = LINE_SUFFIX.search(message or "")
    return int(match.group(1)) if match else None


# -- the diff -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One row of the side-by-side diff; `kind` is equal, changed, added, removed or skip."""

    kind: str
    old_number: int | None = None
    old_text: str = ""
    new_number: int | None = None
    new_text: str = ""
    # For changed rows: (text, differs) pieces of each side, so the template can mark what differs.
    old_parts: tuple[tuple[str, bool], ...] = ()
    new_parts: tuple[tuple[str, bool], ...] = ()
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class XmlDiff:
    rows: list[DiffRow] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    changed: int = 0

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def _common_start(a: str, b: str) -> int:
    count = 0
    for left, right in zip(a, b, strict=False):
        if left != right:
            break
        count += 1
    return count


def _parts(old: str, new: str) -> tuple[tuple[tuple[str, bool], ...], tuple[tuple[str, bool], ...]]:
    """Each side as (same start, what differs, same end): one marked run reads better than scattered letters."""
    prefix = _common_start(old, new)
    suffix = _common_start(old[prefix:][::-1], new[prefix:][::-1])

    def split(text: str) -> tuple[tuple[str, bool], ...]:
        pieces = (
            (text[:prefix], False),
            (text[prefix : len(text) - suffix], True),
            (text[len(text) - suffix :], False),
        )
        return tuple(piece for piece in pieces if piece[0])

    return split(old), split(new)


def xml_diff(old: str, new: str, *, context: int = DIFF_CONTEXT) -> XmlDiff:
    """A side-by-side, line-based diff of two definitions; long unchanged runs fold into a skip row."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    rows: list[DiffRow] = []
    added = removed = changed = 0
    opcodes = matcher.get_opcodes()
    for index, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            pairs = list(zip(range(i1, i2), range(j1, j2), strict=True))
            keep_head = 0 if index == 0 else context
            keep_tail = 0 if index == len(opcodes) - 1 else context
            if len(opcodes) == 1:
                keep_head = len(pairs)  # no change at all: show the document as it is
            if len(pairs) > keep_head + keep_tail + 1:
                shown = [*pairs[:keep_head], None, *pairs[len(pairs) - keep_tail :]]
            else:
                shown = list(pairs)
            for pair in shown:
                if pair is None:
                    rows.append(DiffRow("skip", skipped=len(pairs) - keep_head - keep_tail))
                    continue
                i, j = pair
                rows.append(DiffRow("equal", i + 1, old_lines[i], j + 1, new_lines[j]))
            continue
        for i, j in zip_longest(range(i1, i2), range(j1, j2)):
            if i is not None and j is not None:
                left, right = _parts(old_lines[i], new_lines[j])
                rows.append(DiffRow("changed", i + 1, old_lines[i], j + 1, new_lines[j], left, right))
                changed += 1
            elif i is not None:
                rows.append(DiffRow("removed", old_number=i + 1, old_text=old_lines[i]))
                removed += 1
            elif j is not None:
                rows.append(DiffRow("added", new_number=j + 1, new_text=new_lines[j]))
                added += 1
    return XmlDiff(rows=rows, added=added, removed=removed, changed=changed)


# -- applying (the worker) ------------------------------------------------------------------------


def _define_xml(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    uuid = str(vm.uuid)
    progress(20, f"Asking {host.name} to check and define the new XML of {vm.name}")
    try:
        devices.redefine_domain_xml(host.virt_target(), uuid, str(op.params.get("xml", "")))
    except devices.DefineRefused as exc:
        if exc.line is None:
            raise
        # The operation's error is all a page receives: the line travels at its end.
        message = f"{exc.message} (line {exc.line})"
        raise devices.DefineRefused(message, code=exc.code, raw=exc.raw, line=exc.line) from exc
    progress(80, f"Reading {vm.name} back from {host.name}")
    vm_refresh(host, uuid)
    running = VirtualMachine.objects.filter(pk=vm.pk, state__in=ACTIVE).exists()
    note = (
        "Saved. The running guest keeps its current configuration until it is shut down and started again."
        if running
        else "Saved. It takes effect when the VM next starts."
    )
    return {"note": note}


operation_kind("vm.define-xml", label="Apply XML", deadline_seconds=300, retry_transient=False)(_define_xml)
action_register(
    ActionSpec(
        "define-xml",
        "Apply XML",
        "file-code",
        "apply the XML",
        ANY_STATE,
        params=("xml",),
        group="xml",
        check=check_define_xml,
        requires="vm.xml",
    )
)
