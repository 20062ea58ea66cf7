"""Errors of the lab helpers. They are AssertionErrors so that pytest reports a failure, never a skip."""


class LabError(AssertionError):
    """The lab (a script, a daemon, virsh) did not do what it was asked to."""


class GuestBootTimeout(LabError):
    """A guest did not print its boot marker in time; the message holds its last serial lines."""
