"""Channels group names: one helper per kind of audience, so names are spelled in one place."""

ADMINS = "admins"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def host_group(host_id: int | str) -> str:
    return f"host.{host_id}"


def target_group(target_type: str, target_id: str) -> str:
    return f"{target_type}.{target_id}"
