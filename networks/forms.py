"""The "Define network" form: it only parses into the API's body; networks/checks.py checks the values."""

from __future__ import annotations

from typing import Any

from django import forms

MODE_CHOICES = [
    ("nat", "NAT"),
    ("route", "Routed"),
    ("isolated", "Isolated"),
    ("bridge", "Host bridge"),
    ("macvtap", "macvtap"),
    ("openvswitch", "Open vSwitch"),
]
PORTGROUP_ROWS = 3
RATE_FIELDS = ("average", "peak", "burst")


def _int(value: Any) -> int | str | None:
    """A number as typed: an int when it is one, else the text (the checks then name the field)."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else text


class NetworkDefineForm(forms.Form):
    host = forms.TypedChoiceField(coerce=int, choices=())
    mode = forms.ChoiceField(choices=MODE_CHOICES, initial="nat", widget=forms.RadioSelect)
    name = forms.CharField(max_length=64, required=False)
    ipv4_address = forms.CharField(max_length=64, required=False)
    ipv4_prefix = forms.CharField(max_length=8, required=False, initial="24")
    dhcp_start = forms.CharField(max_length=64, required=False)
    dhcp_end = forms.CharField(max_length=64, required=False)
    ipv6_address = forms.CharField(max_length=64, required=False)
    ipv6_prefix = forms.CharField(max_length=8, required=False, initial="64")
    ipv6_dhcp_start = forms.CharField(max_length=64, required=False)
    ipv6_dhcp_end = forms.CharField(max_length=64, required=False)
    bridge_name = forms.CharField(max_length=64, required=False)
    stp = forms.BooleanField(required=False, initial=True)
    delay = forms.CharField(max_length=8, required=False, initial="0")
    forward_dev = forms.CharField(max_length=64, required=False)
    autostart = forms.BooleanField(required=False, initial=True)
    start = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, hosts: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["host"].choices = hosts  # type: ignore[attr-defined]
        for direction in ("in", "out"):
            for part in RATE_FIELDS:
                self.fields[f"{direction}_{part}"] = forms.CharField(max_length=12, required=False)
        for row in range(PORTGROUP_ROWS):
            self.fields[f"pg{row}_name"] = forms.CharField(max_length=64, required=False)
            self.fields[f"pg{row}_default"] = forms.BooleanField(required=False)
            self.fields[f"pg{row}_tags"] = forms.CharField(max_length=200, required=False)
            self.fields[f"pg{row}_trunk"] = forms.BooleanField(required=False)
            self.fields[f"pg{row}_native"] = forms.CharField(max_length=8, required=False)
            for direction in ("in", "out"):
                for part in RATE_FIELDS:
                    self.fields[f"pg{row}_{direction}_{part}"] = forms.CharField(max_length=12, required=False)

    def portgroup_rows(self) -> list[dict[str, Any]]:
        """The bound fields of each portgroup row, for the template (``in_average``, ``out_burst``...)."""
        rates = [f"{direction}_{part}" for direction in ("in", "out") for part in RATE_FIELDS]
        names = ["name", "default", "tags", "trunk", "native", *rates]
        return [{key: self[f"pg{row}_{key}"] for key in names} | {"index": row} for row in range(PORTGROUP_ROWS)]

    def to_data(self) -> dict[str, Any]:
        """The API's body (see networks/api.py) for what the form holds."""
        data = self.cleaned_data
        body: dict[str, Any] = {
            "mode": data["mode"],
            "name": data["name"],
            "autostart": data["autostart"],
            "start": data["start"],
        }
        if data["ipv4_address"]:
            body["ipv4"] = {"address": data["ipv4_address"].strip(), "prefix": _int(data["ipv4_prefix"])}
            if data["dhcp_start"] or data["dhcp_end"]:
                body["ipv4"]["dhcp"] = {"start": data["dhcp_start"].strip(), "end": data["dhcp_end"].strip()}
        if data["ipv6_address"]:
            body["ipv6"] = {"address": data["ipv6_address"].strip(), "prefix": _int(data["ipv6_prefix"])}
            if data["ipv6_dhcp_start"] or data["ipv6_dhcp_end"]:
                body["ipv6"]["dhcp"] = {"start": data["ipv6_dhcp_start"].strip(), "end": data["ipv6_dhcp_end"].strip()}
        if data["mode"] in ("nat", "route", "isolated"):
            body["bridge"] = {"name": data["bridge_name"], "stp": data["stp"], "delay": _int(data["delay"])}
        elif data["bridge_name"]:
            body["bridge"] = {"name": data["bridge_name"]}
        if data["forward_dev"]:
            body["forward_dev"] = data["forward_dev"]
        bandwidth = self._bandwidth("")
        if bandwidth:
            body["bandwidth"] = bandwidth
        groups = [self._portgroup(row) for row in range(PORTGROUP_ROWS)]
        body["portgroups"] = [group for group in groups if group is not None]
        return body

    def _portgroup(self, row: int) -> dict[str, Any] | None:
        data = self.cleaned_data
        name = data[f"pg{row}_name"].strip()
        if not name:
            return None
        group: dict[str, Any] = {"name": name, "default": data[f"pg{row}_default"]}
        tags = [_int(tag) for tag in data[f"pg{row}_tags"].replace(",", " ").split()]
        if tags:
            group["vlan"] = {"tags": tags, "trunk": data[f"pg{row}_trunk"], "native": _int(data[f"pg{row}_native"])}
        bandwidth = self._bandwidth(f"pg{row}_")
        if bandwidth:
            group["bandwidth"] = bandwidth
        return group

    def _bandwidth(self, prefix: str) -> dict[str, Any]:
        """The API's ``bandwidth`` from the fields ``<prefix>in_average`` ... ``<prefix>out_burst``; empty if none."""
        bandwidth = {}
        for direction, key in (("in", "inbound"), ("out", "outbound")):
            rate = {part: _int(self.cleaned_data[f"{prefix}{direction}_{part}"]) for part in RATE_FIELDS}
            if any(value is not None for value in rate.values()):
                bandwidth[key] = rate
        return bandwidth

    def add_refusal(self, details: dict[str, Any], message: str) -> None:
        """Put each refused field's message next to its input (`ipv4.dhcp` → dhcp_start), else on the form."""
        placed = False
        for key, value in details.items():
            field = _form_field(str(key))
            if field in self.fields:
                self.add_error(field, str(value))
                placed = True
        if not placed:
            self.add_error(None, message)


def _form_field(key: str) -> str:
    parts = key.split(".")
    head = parts[0]
    if head in ("ipv4", "ipv6"):
        if len(parts) > 1 and parts[1] == "dhcp":
            return "dhcp_start" if head == "ipv4" else "ipv6_dhcp_start"
        return f"{head}_prefix" if parts[-1] == "prefix" else f"{head}_address"
    if head == "bridge":
        return {"stp": "stp", "delay": "delay"}.get(parts[-1], "bridge_name")
    if head == "bandwidth":
        direction = "out" if len(parts) > 1 and parts[1] == "outbound" else "in"
        return f"{direction}_{parts[2] if len(parts) > 2 else 'average'}"
    if head == "portgroups" and len(parts) > 2:
        sub = parts[2]
        if sub == "vlan":
            return f"pg{parts[1]}_native" if parts[-1] == "native" else f"pg{parts[1]}_tags"
        if sub == "bandwidth":
            direction = "out" if len(parts) > 3 and parts[3] == "outbound" else "in"
            return f"pg{parts[1]}_{direction}_{parts[4] if len(parts) > 4 else 'average'}"
        return f"pg{parts[1]}_{sub}"
    return head
