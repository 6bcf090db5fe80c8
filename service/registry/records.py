"""What the registry hands out: plain typed records of what it stores.

The registry knows nothing of HTTP: the API layer (`service.api.documents`) turns these records
into the JSON documents clients see, and the web pages render those same documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: The alias that unversioned predict and infer requests follow (else the newest version).
DEFAULT_ALIAS = "default"


def utc(t: datetime) -> datetime:
    """A stored time, aware of its zone: SQLite gives naive datetimes back (stored as UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


@dataclass(frozen=True)
class StoredVersion:
    """One immutable version of a model, with what may change about it (aliases, tags,
    description) as it was when read."""

    model: str
    number: int
    description: str
    created_at: datetime
    spec: dict[str, Any]
    spec_sha256: str
    weights_sha256: str
    totals: dict[str, Any]
    #: the aliases that point at this version, by name
    aliases: list[str]
    tags: dict[str, str]


@dataclass(frozen=True)
class StoredModel:
    """A model and its aliases (alias → version number)."""

    name: str
    description: str
    created_at: datetime
    version_count: int
    latest_version: int | None
    aliases: dict[str, int]
    #: every version, oldest first, when read whole (`Registry.model`); None in a listing
    versions: list[StoredVersion] | None = None
    #: the versions that matched a listing's tag filter; None when it had none
    tagged_versions: list[int] | None = None

    @property
    def default_version(self) -> int | None:
        """The version an unversioned request gets: alias `default`, else the newest (None: the
        model has no versions)."""
        return self.aliases.get(DEFAULT_ALIAS, self.latest_version)


@dataclass(frozen=True)
class AliasMove:
    """Where an alias points now, and where it pointed before (None: it is new)."""

    model: str
    alias: str
    version: int
    previous_version: int | None


@dataclass(frozen=True)
class StoredEvent:
    """One registry write as the history recorded it (see history.py)."""

    at: datetime
    actor: str
    action: str
    version: int | None
    alias: str | None
    previous_version: int | None
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class LayerChange:
    """One layer of a version diff (see diff.py): `change` is added, removed, changed or same;
    `fields` names what changed; the rows are the layer table's, None on the side it is absent."""

    name: str
    change: str
    fields: list[str]
    from_row: dict[str, Any] | None
    to_row: dict[str, Any] | None
    #: ‖to − from‖ / ‖from‖ over the layer's arrays; None where it is undefined
    weight_change: float | None


@dataclass(frozen=True)
class VersionDiff:
    """Two versions of a model compared layer by layer, with both versions' totals."""

    model: str
    from_version: int
    to_version: int
    layers: list[LayerChange]
    from_totals: dict[str, int]
    to_totals: dict[str, int]
