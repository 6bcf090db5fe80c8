"""Dynamic batching's configuration, with Triton's names and JSON fields (GET/PUT
/v1/models/{name}/config); the scheduler that applies it is service.serving.scheduler.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InvalidInput


@dataclass(frozen=True)
class DynamicBatching:
    max_queue_delay_microseconds: int = 0
    preferred_batch_size: tuple[int, ...] = ()
    max_queue_size: int = 1024
    default_timeout_microseconds: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """How one model's requests are batched (GET/PUT /v1/models/{name}/config)."""

    max_batch_size: int = 32
    dynamic_batching: DynamicBatching = field(default_factory=DynamicBatching)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["dynamic_batching"]["preferred_batch_size"] = list(
            self.dynamic_batching.preferred_batch_size
        )
        return doc

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ModelConfig:
        """Server-wide defaults: CONVSERVE_MAX_BATCH_SIZE, CONVSERVE_MAX_QUEUE_DELAY_US,
        CONVSERVE_PREFERRED_BATCH_SIZE (comma-separated), CONVSERVE_MAX_QUEUE_SIZE,
        CONVSERVE_DEFAULT_TIMEOUT_US."""
        env = os.environ if environ is None else environ
        d, db = cls(), DynamicBatching()

        def num(key: str, default: int) -> int:
            raw = (env.get(key) or "").strip()
            if not raw:
                return default
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"{key} must be an integer, got {raw!r}") from None

        preferred = env.get("CONVSERVE_PREFERRED_BATCH_SIZE", "")
        try:
            sizes = [int(p) for p in preferred.split(",") if p.strip()]
        except ValueError:
            raise ValueError(
                f"CONVSERVE_PREFERRED_BATCH_SIZE must be integers, got {preferred!r}"
            ) from None
        doc = {
            "max_batch_size": num("CONVSERVE_MAX_BATCH_SIZE", d.max_batch_size),
            "dynamic_batching": {
                "max_queue_delay_microseconds": num(
                    "CONVSERVE_MAX_QUEUE_DELAY_US", db.max_queue_delay_microseconds
                ),
                "preferred_batch_size": sizes,
                "max_queue_size": num("CONVSERVE_MAX_QUEUE_SIZE", db.max_queue_size),
                "default_timeout_microseconds": num(
                    "CONVSERVE_DEFAULT_TIMEOUT_US", db.default_timeout_microseconds
                ),
            },
        }
        try:
            return cls.parse(doc)
        except InvalidInput as err:
            raise ValueError(f"batching defaults from the environment: {err.detail}") from None

    @classmethod
    def parse(cls, doc: Any, base: ModelConfig | None = None) -> ModelConfig:
        """A config from JSON; fields not given keep `base`'s values. InvalidInput names the
        field that is wrong."""
        base = base or cls()
        if not isinstance(doc, dict):
            raise InvalidInput("the config must be a JSON object")
        unknown = set(doc) - {"max_batch_size", "dynamic_batching"}
        if unknown:
            raise InvalidInput(
                f"unknown config field(s) {', '.join(sorted(unknown))}; the fields are "
                f"max_batch_size and dynamic_batching"
            )
        mbs = _count(doc.get("max_batch_size", base.max_batch_size), "max_batch_size", 1, 4096)
        db_doc = doc.get("dynamic_batching", {})
        if not isinstance(db_doc, dict):
            raise InvalidInput("dynamic_batching must be a JSON object")
        names = {f for f in DynamicBatching.__dataclass_fields__}
        unknown = set(db_doc) - names
        if unknown:
            raise InvalidInput(
                f"unknown dynamic_batching field(s) {', '.join(sorted(unknown))}; the fields "
                f"are {', '.join(sorted(names))}"
            )
        old = base.dynamic_batching
        pref = db_doc.get("preferred_batch_size", list(old.preferred_batch_size))
        if not isinstance(pref, list):
            raise InvalidInput("dynamic_batching.preferred_batch_size must be a list of counts")
        sizes = tuple(
            sorted({_count(p, "dynamic_batching.preferred_batch_size[]", 1, 4096) for p in pref})
        )
        if sizes and sizes[-1] > mbs:
            raise InvalidInput(
                f"dynamic_batching.preferred_batch_size {sizes[-1]} is above max_batch_size {mbs}"
            )
        return cls(
            mbs,
            DynamicBatching(
                _count(
                    db_doc.get("max_queue_delay_microseconds", old.max_queue_delay_microseconds),
                    "dynamic_batching.max_queue_delay_microseconds",
                    0,
                ),
                sizes,
                _count(
                    db_doc.get("max_queue_size", old.max_queue_size),
                    "dynamic_batching.max_queue_size",
                    0,
                ),
                _count(
                    db_doc.get("default_timeout_microseconds", old.default_timeout_microseconds),
                    "dynamic_batching.default_timeout_microseconds",
                    0,
                ),
            ),
        )


#: Above any sensible setting (a day in microseconds, a million inputs), and well inside int64.
_TOP = 86_400_000_000


def _count(value: Any, name: str, minimum: int, top: int = _TOP) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer, not {value!r}")
    if not minimum <= value <= top:
        raise InvalidInput(f"{name} must be between {minimum} and {top}, not {value}")
    return value
