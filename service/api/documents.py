"""The JSON documents of /v1/models, built from the registry's records.

The registry hands out plain records (service.registry.records); what a client sees of them (the
field names, times as ISO 8601 in UTC, a version's preprocessing spelled out) is decided here,
once: the API answers with these documents and the web pages render the same ones.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from service.architecture import image_preprocess
from service.registry.records import (
    AliasMove,
    LayerChange,
    StoredEvent,
    StoredModel,
    StoredVersion,
    VersionDiff,
)


def iso(t: datetime) -> str:
    """2026-12-02T15:40:11.204000Z: ISO 8601, UTC written as Z."""
    return t.isoformat().replace("+00:00", "Z")


def version_summary(v: StoredVersion) -> dict[str, Any]:
    """A version as lists show it: everything but its spec."""
    return {
        "version": v.number,
        "description": v.description,
        "created_at": iso(v.created_at),
        "spec_sha256": v.spec_sha256,
        "weights_sha256": v.weights_sha256,
        "totals": v.totals,
        "aliases": v.aliases,
        "tags": v.tags,
    }


def version_document(v: StoredVersion) -> dict[str, Any]:
    """One version whole (GET /v1/models/{name}/versions/{ref}): with its spec, labels, input
    and the image preprocessing it applies (defaults filled in)."""
    return {
        **version_summary(v),
        "model": v.model,
        "spec": v.spec,
        "labels": v.spec.get("labels"),
        "input": v.spec["input"],
        "preprocess": image_preprocess(v.spec["input"]),
    }


def model_document(m: StoredModel) -> dict[str, Any]:
    """A model: in a list, and (with `versions`) whole; `tagged_versions` when a tag filter
    chose it."""
    doc: dict[str, Any] = {
        "name": m.name,
        "description": m.description,
        "created_at": iso(m.created_at),
        "version_count": m.version_count,
        "latest_version": m.latest_version,
        "aliases": m.aliases,
    }
    if m.versions is not None:
        doc["versions"] = [version_summary(v) for v in m.versions]
    if m.tagged_versions is not None:
        doc["tagged_versions"] = m.tagged_versions
    return doc


def alias_document(move: AliasMove) -> dict[str, Any]:
    """Where an alias points now and before (PUT /v1/models/{name}/aliases/{alias}): the
    record's fields as they are."""
    return asdict(move)


def event_document(e: StoredEvent) -> dict[str, Any]:
    """One history event (GET /v1/models/{name}/history): the record's fields, its time in ISO
    8601."""
    return {**asdict(e), "at": iso(e.at)}


def layer_change_document(c: LayerChange) -> dict[str, Any]:
    """One layer of a diff: the record's fields as they are, its rows as `from` and `to`."""
    doc = asdict(c)
    doc["from"], doc["to"] = doc.pop("from_row"), doc.pop("to_row")
    return doc


def diff_document(d: VersionDiff) -> dict[str, Any]:
    """Two versions layer by layer (GET /v1/models/{name}/diff)."""
    return {
        "model": d.model,
        "versions": {"from": d.from_version, "to": d.to_version},
        "layers": [layer_change_document(c) for c in d.layers],
        "totals": {"from": d.from_totals, "to": d.to_totals},
    }
