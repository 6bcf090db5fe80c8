"""Shared fixtures: the zoo's specs and small helpers for building specs in tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from service.architecture import Architecture, Limits
from service.errors import Problem, SpecError

ROOT = Path(__file__).resolve().parents[1]


def load_model_spec(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "models" / f"{name}.json").read_text())


@pytest.fixture
def lenet_spec() -> dict[str, Any]:
    return copy.deepcopy(load_model_spec("lenet"))


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
