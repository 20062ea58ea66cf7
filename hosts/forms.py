from django import forms

from hosts.services import HostInput


class HostForm(forms.Form):
    """Parses the form; hosts.services.host_check decides what is valid."""

    name = forms.CharField(max_length=64, help_text="A short name, e.g. kvm1.")
    uri = forms.CharField(
        label="libvirt URI",
        max_length=512,
        help_text="qemu:///system for this machine, qemu+ssh://user@host/system or qemu+tls://host/system.",
    )
    ssh_key_path = forms.CharField(
        label="SSH key file",
        max_length=512,
        required=False,
        help_text="For qemu+ssh: a private key path on the worker.",
    )
    tls_pki_path = forms.CharField(
        label="TLS PKI directory",
        max_length=512,
        required=False,
        help_text="For qemu+tls: a directory with cacert.pem, clientcert.pem and clientkey.pem.",
    )
    console_address = forms.CharField(
        label="Console address",
        max_length=253,
        required=False,
        help_text="Remote hosts: the host's address on the management network that kvmweb's console proxy reaches.",
    )
    queue = forms.CharField(
        label="Worker queue",
        max_length=64,
        required=False,
        help_text="Empty: the central workers. host.<name> when a worker on the host consumes that queue.",
    )
    enabled = forms.BooleanField(required=False, initial=True, help_text="Disabled hosts are never contacted.")

    def to_input(self) -> HostInput:
        return HostInput(**self.cleaned_data)
