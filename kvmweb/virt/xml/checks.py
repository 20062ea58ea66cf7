"""Small validators shared by the XML specs; each raises InvalidArgument with a plain message."""

from __future__ import annotations

import re
from collections.abc import Iterable

from kvmweb.virt.errors import InvalidArgument

# XML 1.0 cannot carry these characters at all, so a value holding one would either be rejected
# by libvirt with an obscure parser error or, worse, be silently altered.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidArgument(message)


def check_choice(field: str, value: object, allowed: Iterable[str]) -> None:
    options = tuple(allowed)
    require(value in options, f"{field} must be one of {', '.join(options)}; got {value!r}.")


def check_int(field: str, value: object, low: int, high: int) -> None:
    in_range = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    require(in_range, f"{field} must be a whole number from {low} to {high}; got {value!r}.")


def check_text(field: str, value: str, *, max_length: int = 4096, one_line: bool = True) -> None:
    require(isinstance(value, str), f"{field} must be text.")
    require(len(value) <= max_length, f"{field} is longer than {max_length} characters.")
    require(not _NOT_XML_CHAR.search(value), f"{field} contains a control character.")
    if one_line:
        require("\n" not in value and "\r" not in value, f"{field} must be a single line.")


def check_pattern(field: str, value: str, pattern: re.Pattern[str], rule: str) -> None:
    check_text(field, value)
    require(pattern.fullmatch(value) is not None, f"{field} {rule}; got {value!r}.")


def check_absolute_path(field: str, value: str, *, max_length: int = 4096) -> None:
    check_text(field, value, max_length=max_length)
    require(value.startswith("/"), f"{field} must be an absolute path; got {value!r}.")
