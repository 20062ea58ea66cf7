"""The real KVM lab for integration tests, end-to-end tests, the demo and benchmarks.

``scripts/lab/lab.sh`` runs the lab host (the system libvirtd inside network namespace
``kvmweb-lab``); ``scripts/lab/two_hosts.sh`` runs two more hosts, each in its own network and
mount namespace, for migration. This package starts them through those scripts and defines the
tiny test guest built by ``scripts/lab/build_guest.sh``.

Modules: ``hosts`` (start/stop/describe the hosts), ``guests`` (the tiny guest; also a command
line: ``python -m tests.lab.guests``), ``fixtures`` (the pytest fixtures), ``virsh``, ``errors``.
"""
