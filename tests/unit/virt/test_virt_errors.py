"""libvirt's errors, caused for real on the test driver, arrive as the project's exceptions."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from kvmweb import virt
from kvmweb.virt import connection, errors
from kvmweb.virt.xml import DomainSpec, build_domain_xml

DefineScratch = Callable[..., virt.DomainSummary]
MakeSpec = Callable[..., DomainSpec]


# libvirt's numbers (virErrorNumber / virErrorDomain); tests may not import libvirt itself.
VIR_ERR_INTERNAL_ERROR = 1
VIR_ERR_NO_SUPPORT = 3
VIR_ERR_OPERATION_FAILED = 9
VIR_ERR_XML_ERROR = 27
VIR_ERR_SYSTEM_ERROR = 38
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_OPERATION_INVALID = 55
VIR_ERR_OPERATION_TIMEOUT = 68
VIR_ERR_XML_INVALID_SCHEMA = 92
VIR_ERR_AGENT_UNRESPONSIVE = 86
VIR_ERR_ACCESS_DENIED = 88
VIR_FROM_QEMU = 10
VIR_FROM_REMOTE = 7


def test_missing_domain_is_not_found(target: virt.HostTarget) -> None:
    with pytest.raises(virt.NotFound) as caught:
        virt.domain_state(target, str(uuid.uuid4()))

    assert caught.value.code == VIR_ERR_NO_DOMAIN
    assert caught.value.transient is False
    assert caught.value.raw == "Domain not found"
    assert caught.value.message == "The virtual machine was not found. (Domain not found)"
    assert isinstance(caught.value.__cause__, Exception)


def test_starting_a_running_domain_is_an_invalid_operation(target: virt.HostTarget) -> None:
    running = next(summary for summary in virt.list_domains(target) if summary.name == "test")

    with pytest.raises(virt.InvalidOperation) as caught:
        virt.start_domain(target, running.uuid)

    assert caught.value.message == "The virtual machine is already running."
    assert virt.domain_state(target, running.uuid).state == "running"


def test_libvirt_operation_invalid_is_translated(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    with pytest.raises(virt.InvalidOperation) as caught:
        virt.destroy_domain(target, scratch_domain.uuid)

    assert caught.value.code == VIR_ERR_OPERATION_INVALID
    assert caught.value.raw == "Requested operation is not valid: domain is not running"
    assert caught.value.transient is False


def test_defining_a_second_domain_with_a_taken_name_is_already_exists(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary, make_spec: MakeSpec
) -> None:
    duplicate = make_spec(name=scratch_domain.name, uuid=str(uuid.uuid4()))

    with pytest.raises(virt.AlreadyExists) as caught:
        virt.define_domain(target, build_domain_xml(duplicate))

    assert caught.value.code == VIR_ERR_OPERATION_FAILED
    assert "already exists" in caught.value.raw


def test_renaming_through_define_with_a_taken_uuid_is_already_exists(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary, make_spec: MakeSpec
) -> None:
    clash = make_spec(uuid=scratch_domain.uuid)

    with pytest.raises(virt.AlreadyExists) as caught:
        virt.define_domain(target, build_domain_xml(clash))

    assert "already defined with uuid" in caught.value.raw


def test_definition_libvirt_cannot_use_is_invalid_argument(target: virt.HostTarget) -> None:
    with pytest.raises(virt.InvalidArgument) as caught:
        virt.define_domain(target, "<domain type='qemu'><name>no-os</name></domain>")

    assert caught.value.code == VIR_ERR_XML_ERROR
    assert caught.value.message == "The definition is not valid. (XML error: an os <type> must be specified)"


def test_definition_failing_libvirts_schema_is_invalid_argument(target: virt.HostTarget, make_spec: MakeSpec) -> None:
    valid = build_domain_xml(make_spec())
    with_unknown_element = valid.replace("<devices>", "<devices><bogus />", 1)

    with pytest.raises(virt.InvalidArgument) as caught:
        virt.define_domain(target, with_unknown_element)

    assert caught.value.code == VIR_ERR_XML_INVALID_SCHEMA
    assert caught.value.message.startswith("The definition does not match libvirt's schema.")


def test_unsupported_driver_call_is_unsupported(target: virt.HostTarget) -> None:
    with pytest.raises(virt.Unsupported) as caught, connection.connect(target) as conn:
        conn.setKeepAlive(5, 3)

    assert caught.value.code == VIR_ERR_NO_SUPPORT


def test_bad_uri_scheme_is_invalid_argument() -> None:
    with pytest.raises(virt.InvalidArgument) as caught:
        virt.HostTarget("xen:///system")

    assert caught.value.message == (
        "Unsupported libvirt URI scheme 'xen': use qemu://, qemu+ssh://, qemu+tls://, qemu+tcp://, "
        "qemu+unix://, test:// or test+unix://."
    )


def test_unreachable_host_is_transient_host_unreachable() -> None:
    target = virt.HostTarget("qemu+unix:///system?socket=/nonexistent/libvirt-sock")

    with pytest.raises(virt.HostUnreachable) as caught:
        connection.get_connection(target)

    assert caught.value.transient is True
    assert caught.value.code == VIR_ERR_SYSTEM_ERROR
    assert "/nonexistent/libvirt-sock" in caught.value.raw
    assert caught.value.message.startswith("The host could not be reached.")


@pytest.mark.parametrize(
    ("code", "domain", "raw", "expected"),
    [
        (VIR_ERR_SYSTEM_ERROR, VIR_FROM_REMOTE, "Cannot recv data: Connection reset by peer", virt.HostUnreachable),
        (VIR_ERR_SYSTEM_ERROR, VIR_FROM_QEMU, "cannot open file '/x': Permission denied", virt.VirtError),
        (VIR_ERR_INTERNAL_ERROR, VIR_FROM_QEMU, "internal error: client socket is closed", virt.HostUnreachable),
        (VIR_ERR_INTERNAL_ERROR, VIR_FROM_QEMU, "internal error: qemu unexpectedly closed", virt.VirtError),
        (VIR_ERR_OPERATION_TIMEOUT, VIR_FROM_QEMU, "Timed out during operation", virt.OperationTimeout),
        (VIR_ERR_AGENT_UNRESPONSIVE, VIR_FROM_QEMU, "Guest agent is not responding", virt.OperationTimeout),
        (VIR_ERR_ACCESS_DENIED, VIR_FROM_QEMU, "access denied", virt.AccessDenied),
        (VIR_ERR_OPERATION_FAILED, VIR_FROM_QEMU, "operation failed: pool 'x' already exists", virt.AlreadyExists),
        (VIR_ERR_OPERATION_FAILED, VIR_FROM_QEMU, "operation failed: job aborted", virt.VirtError),
        (None, None, "", virt.VirtError),
        (99999, VIR_FROM_QEMU, "from a newer libvirt", virt.VirtError),
    ],
)
def test_rules_for_errors_the_test_driver_cannot_cause(
    code: int | None, domain: int | None, raw: str, expected: type[virt.VirtError]
) -> None:
    cls, _summary = errors._rule_for(code, domain, raw)

    assert cls is expected


def test_transient_flag_follows_the_class() -> None:
    transient = {cls.__name__ for cls in _all_error_classes() if cls.transient}

    assert transient == {"HostUnreachable", "OperationTimeout"}


def test_decorated_function_raises_project_error(target: virt.HostTarget, define_scratch: DefineScratch) -> None:
    summary = define_scratch()

    @errors.translates
    def destroy_twice() -> None:
        with connection.connect(target) as conn:
            dom = conn.lookupByUUIDString(summary.uuid)
        dom.destroy()  # outside connect(): only the decorator translates this one

    with pytest.raises(virt.InvalidOperation):
        destroy_twice()


def _all_error_classes() -> list[type[virt.VirtError]]:
    pending: list[type[virt.VirtError]] = [virt.VirtError]
    found: list[type[virt.VirtError]] = []
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
