"""Channels group names: one helper per kind of audience, so names are spelled in one place."""

ADMINS = "admins"
# The event watcher (manage.py watch_hosts) listens here for hosts added, changed or removed; browsers never join.
WATCHER = "watcher.hosts"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def host_group(host_id: int | str) -> str:
    return f"host.{host_id}"


def target_group(target_type: str, target_id: str) -> str:
    return f"{target_type}.{target_id}"


def stats_group(kind: str, key: str) -> str:
    """Live samples of one VM (kind "vm", key its UUID) or host (kind "host", key its id)."""
    return f"stats.{kind}.{key}"
