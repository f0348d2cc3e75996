"""Format versions: refuse what we cannot read, upgrade what we know how to.

A migration maps the root attributes of version ``v`` to those of ``v + 1`` (and may rewrite arrays
through the store it is given). Opening an older store applies the chain in memory for reading; a
writable open also persists the upgraded attributes, so a store is never half old, half new. Only v1
exists today; the registry is how v2 will ship its upgrade from v1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robot_offrl.data.errors import StoreCorruptError, StoreVersionError
from robot_offrl.data.schema import FORMAT_NAME, FORMAT_VERSION

Migration = Callable[[dict[str, Any]], dict[str, Any]]

# from_version -> function upgrading the root attributes to from_version + 1
MIGRATIONS: dict[int, Migration] = {}


def register_migration(from_version: int) -> Callable[[Migration], Migration]:
    def deco(fn: Migration) -> Migration:
        MIGRATIONS[from_version] = fn
        return fn

    return deco


def check_format(attrs: dict[str, Any], where: str) -> int:
    """The store's format version, after checking it is a robot_offrl store at all."""
    name = attrs.get("format")
    if name != FORMAT_NAME:
        raise StoreCorruptError(
            f"{where}: not a robot_offrl episode store (attribute format={name!r}, expected {FORMAT_NAME!r})"
        )
    version = attrs.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise StoreCorruptError(f"{where}: format_version {version!r} is not an integer; the store is damaged")
    return version


def upgrade_attrs(attrs: dict[str, Any], where: str) -> tuple[dict[str, Any], int]:
    """Return attributes at FORMAT_VERSION and the version the store was written in."""
    version = check_format(attrs, where)
    if version > FORMAT_VERSION:
        raise StoreVersionError(
            f"{where}: written in store format version {version} by a newer robot-offrl "
            f"({attrs.get('created_by', 'unknown version')}); this robot-offrl reads up to version "
            f"{FORMAT_VERSION}. Upgrade robot-offrl (pip install -U robot-offrl) to read it."
        )
    original = version
    current = dict(attrs)
    while version < FORMAT_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise StoreVersionError(
                f"{where}: store format version {version} has no migration to {FORMAT_VERSION} in this "
                f"robot-offrl; open it with the release that wrote it and re-export the episodes"
            )
        current = step(dict(current))
        version += 1
        current["format_version"] = version
    return current, original
