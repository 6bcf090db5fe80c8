"""Helpers that test modules share (test modules never import from each other or from
conftest.py, which holds the fixtures): specs and weights to build requests with, the test
database's URL. http.py checks HTTP answers, live.py starts real servers, oracle.py is the slow,
obviously-correct loop implementation the engine is tested against, pages.py lists the web pages."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from service.architecture import Architecture, Limits
from service.errors import Problem, SpecError

ROOT = Path(__file__).resolve().parents[2]

#: PostgreSQL for the registry tests, when set (.ci/run sets it); SQLite always.
PG_URL = os.environ.get("TEST_DATABASE_URL")


def load_model_spec(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "models" / f"{name}.json").read_text())


def spec_of(input_shape: list[int], *layers: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A spec with an input named 'image' and the given layers."""
    return {"input": {"name": "image", "shape": input_shape}, "layers": list(layers), **top}


def problems_of(spec: Any, limits: Limits | None = None) -> list[Problem]:
    """The problems validation reports; fails the test if the spec is accepted."""
    with pytest.raises(SpecError) as info:
        Architecture.from_spec(spec, limits)
    assert info.value.problems, "a SpecError must say what is wrong"
    return info.value.problems


def only_problem(spec: Any, limits: Limits | None = None) -> Problem:
    found = problems_of(spec, limits)
    assert len(found) == 1, [p.message for p in found]
    return found[0]


def pg_schema_url(base: str, schema: str) -> str:
    """`base` with its search path set to `schema` (a schema of its own per test)."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def lenet_weights(seed: int = 0) -> bytes:
    from service.weights import dump_npz

    return dump_npz(Architecture.from_spec(load_model_spec("lenet")).random_weights(seed))


def upload(spec: Any, weights: bytes, **extra: Any) -> dict[str, Any]:
    """A multipart body for POST .../versions."""
    text = spec if isinstance(spec, str) else json.dumps(spec)
    return {
        "spec": (io.BytesIO(text.encode()), "spec.json"),
        "weights": (io.BytesIO(weights), "weights.npz"),
        **extra,
    }
