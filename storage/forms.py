"""The "Define pool" form: it only parses; storage.pools checks the values (PoolSpec, raw XML)."""

from __future__ import annotations

from typing import Any

from django import forms

TYPE_CHOICES = [
    ("dir", "Directory"),
    ("fs", "Local file system"),
    ("netfs", "NFS share"),
    ("logical", "LVM volume group"),
    ("iscsi", "iSCSI target"),
    ("xml", "Other (XML)"),
]
FS_FORMATS = [
    ("auto", "auto"),
    ("ext4", "ext4"),
    ("xfs", "xfs"),
    ("btrfs", "btrfs"),
    ("ext3", "ext3"),
    ("vfat", "vfat"),
]


class PoolDefineForm(forms.Form):
    host = forms.TypedChoiceField(coerce=int, choices=())
    type = forms.ChoiceField(choices=TYPE_CHOICES, initial="dir", widget=forms.RadioSelect)
    name = forms.CharField(max_length=64, required=False)
    target_path = forms.CharField(max_length=1024, required=False)
    source_device = forms.CharField(max_length=1024, required=False)
    source_devices = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    fs_format = forms.ChoiceField(choices=FS_FORMATS, required=False, initial="auto")
    source_host = forms.CharField(max_length=255, required=False)
    source_dir = forms.CharField(max_length=1024, required=False)
    source_name = forms.CharField(max_length=128, required=False)
    iqn = forms.CharField(max_length=255, required=False)
    xml = forms.CharField(max_length=65536, required=False, strip=False, widget=forms.Textarea(attrs={"rows": 12}))

    def __init__(self, *args: Any, hosts: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["host"].choices = hosts  # type: ignore[attr-defined]

    def to_data(self) -> dict[str, Any]:
        """The fields that apply to the chosen type, as storage.pools.pool_define takes them."""
        data = self.cleaned_data
        kind = data["type"]
        if kind == "xml":
            return {"type": kind, "xml": data["xml"]}
        values: dict[str, Any] = {"type": kind, "name": data["name"]}
        if kind in ("dir", "fs", "netfs", "logical"):
            values["target_path"] = data["target_path"]
        if kind == "fs":
            values["source_devices"] = [data["source_device"]] if data["source_device"] else []
            values["source_format"] = data["fs_format"] or "auto"
        if kind in ("netfs", "iscsi"):
            values["source_host"] = data["source_host"]
        if kind == "netfs":
            values["source_dir"] = data["source_dir"]
        if kind == "logical":
            values["source_name"] = data["source_name"]
            values["source_devices"] = data["source_devices"]
        if kind == "iscsi":
            values["iqn"] = data["iqn"]
        return values
