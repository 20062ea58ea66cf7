"""Power and state actions on the test driver: each one changes what libvirt itself reports."""

from __future__ import annotations

import re

import pytest

from kvmweb import virt
from kvmweb.virt import lifecycle


@pytest.fixture
def running(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> virt.DomainSummary:
    virt.start_domain(target, scratch_domain.uuid)
    return scratch_domain


def _state(target: virt.HostTarget, dom: virt.DomainSummary) -> virt.DomainState:
    return virt.domain_state(target, dom.uuid)


def test_shutdown_with_the_hypervisors_choice_powers_off(target: virt.HostTarget, running: virt.DomainSummary) -> None:
    virt.shutdown_domain(target, running.uuid, mode=None)

    assert _state(target, running) == virt.DomainState("shutoff", "shutdown")


def test_shutdown_modes_reach_libvirt_as_flags(target: virt.HostTarget, running: virt.DomainSummary) -> None:
    # The test driver accepts no shutdown flags at all, so an explicit mode is refused there:
    # proof that the flag is passed rather than dropped. (The lab tests cover ACPI for real.)
    with pytest.raises(virt.InvalidArgument, match="unsupported flags \\(0x1\\)"):
        virt.shutdown_domain(target, running.uuid, mode="acpi")
    with pytest.raises(virt.InvalidArgument, match="unsupported flags \\(0x2\\)"):
        virt.shutdown_domain(target, running.uuid, mode="agent")
    assert _state(target, running).state == "running"


def test_an_unknown_mode_is_refused_before_libvirt(target: virt.HostTarget, running: virt.DomainSummary) -> None:
    with pytest.raises(virt.InvalidArgument, match="Unknown mode 'bios'"):
        virt.shutdown_domain(target, running.uuid, mode="bios")  # type: ignore[arg-type]
    with pytest.raises(virt.InvalidArgument, match="Unknown mode 'bios'"):
        virt.reboot_domain(target, running.uuid, mode="bios")  # type: ignore[arg-type]


def test_shutting_down_a_shut_off_domain_is_an_invalid_operation(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary
) -> None:
    with pytest.raises(virt.InvalidOperation, match="not running"):
        virt.shutdown_domain(target, scratch_domain.uuid)


def test_reboot_keeps_the_domain_running(target: virt.HostTarget, running: virt.DomainSummary) -> None:
    for mode in (None, "acpi", "agent"):
        virt.reboot_domain(target, running.uuid, mode=mode)  # type: ignore[arg-type]
        assert _state(target, running).state == "running"


def test_reboot_of_a_shut_off_domain_is_refused(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    with pytest.raises(virt.InvalidOperation, match="not running"):
        virt.reboot_domain(target, scratch_domain.uuid)


def test_suspend_then_resume(target: virt.HostTarget, running: virt.DomainSummary) -> None:
    virt.suspend_domain(target, running.uuid)
    assert _state(target, running) == virt.DomainState("paused", "user")

    virt.resume_domain(target, running.uuid)
    assert _state(target, running) == virt.DomainState("running", "unpaused")


def test_suspend_of_a_shut_off_domain_is_refused(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    with pytest.raises(virt.InvalidOperation, match="not running"):
        virt.suspend_domain(target, scratch_domain.uuid)
    with pytest.raises(virt.InvalidOperation, match="not running"):
        virt.resume_domain(target, scratch_domain.uuid)


def test_managed_save_stops_the_domain_and_start_restores_it(
    target: virt.HostTarget, running: virt.DomainSummary
) -> None:
    virt.managed_save_domain(target, running.uuid)
    assert _state(target, running) == virt.DomainState("shutoff", "saved")
    assert virt.get_domain_record(target, running.uuid).has_managed_save is True

    virt.start_domain(target, running.uuid)
    # The test driver calls it "booted"; QEMU says "restored" (the lab tests check the guest kept its uptime).
    assert _state(target, running).state == "running"
    assert virt.get_domain_record(target, running.uuid).has_managed_save is False


def test_managed_save_remove_makes_the_next_start_a_boot(target: virt.HostTarget, running: virt.DomainSummary) -> None:
    virt.managed_save_domain(target, running.uuid)
    virt.managed_save_remove(target, running.uuid)
    assert virt.get_domain_record(target, running.uuid).has_managed_save is False

    virt.start_domain(target, running.uuid)
    assert _state(target, running) == virt.DomainState("running", "booted")


def test_managed_save_of_a_shut_off_domain_is_refused(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary
) -> None:
    with pytest.raises(virt.InvalidOperation, match="not running"):
        virt.managed_save_domain(target, scratch_domain.uuid)


def test_autostart_can_be_turned_on_and_off(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    virt.set_autostart(target, scratch_domain.uuid, enabled=True)
    assert virt.get_domain(target, scratch_domain.uuid).autostart is True
    virt.set_autostart(target, scratch_domain.uuid, enabled=False)
    assert virt.get_domain(target, scratch_domain.uuid).autostart is False


def test_ctrl_alt_del_is_sent_to_a_running_domain(target: virt.HostTarget, running: virt.DomainSummary) -> None:
    assert (lifecycle.KEY_LEFTCTRL, lifecycle.KEY_LEFTALT, lifecycle.KEY_DELETE) == (29, 56, 111)
    virt.send_ctrl_alt_del(target, running.uuid)  # the test driver accepts keys and does nothing with them

    assert _state(target, running).state == "running"


def test_ctrl_alt_del_to_a_shut_off_domain_is_refused(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary
) -> None:
    with pytest.raises(virt.InvalidOperation, match="not running"):
        virt.send_ctrl_alt_del(target, scratch_domain.uuid)


def test_the_test_driver_has_no_guest_agent_to_answer(
    target: virt.HostTarget, running: virt.DomainSummary, scratch_domain: virt.DomainSummary
) -> None:
    # qemuAgentCommand is QEMU-only; the lab tests check a real agent answers.
    assert virt.guest_agent_answers(target, running.uuid, timeout=1) is False


def test_guest_agent_of_a_shut_off_domain_does_not_answer(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary
) -> None:
    assert virt.guest_agent_answers(target, scratch_domain.uuid) is False


def test_actions_on_a_missing_domain_are_not_found(target: virt.HostTarget) -> None:
    missing = "00000000-0000-4000-8000-000000000001"
    calls = [
        lambda: virt.reboot_domain(target, missing),
        lambda: virt.suspend_domain(target, missing),
        lambda: virt.resume_domain(target, missing),
        lambda: virt.managed_save_domain(target, missing),
        lambda: virt.managed_save_remove(target, missing),
        lambda: virt.send_ctrl_alt_del(target, missing),
        lambda: virt.guest_agent_answers(target, missing),
    ]
    for call in calls:
        with pytest.raises(virt.NotFound, match=re.escape("The virtual machine was not found.")):
            call()
