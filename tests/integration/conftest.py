"""Integration tests run against the real KVM lab.

The lab fixtures (``lab_host``, ``libvirt_host``, ``tiny_guest``, ``running_tiny_guest``,
``two_hosts``, ``guest_name``) live in tests/lab/fixtures.py, which tests/conftest.py registers as
a plugin for every test layer; they are not redefined here, so that one test run shares one lab.
"""
