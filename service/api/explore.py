"""What the web interface draws that no other endpoint gives: one layer's weights as JSON, and
where the engine spends its time per layer (measured on request, cached per version)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
import numpy as np
from flask import current_app
from marshmallow import fields, validate

from service.errors import NotFound
from service.serving.dataplane import DataPlane, LoadedModel

from .parsing import ApiBlueprint
from .security import requires

blp = ApiBlueprint(
    "explore",
    __name__,
    url_prefix="/v1/models",
    description="A layer's weights as JSON and per-layer timings, for drawing a network.",
)

#: Profiles kept (per worker), most recently measured last.
PROFILES_KEPT = 64
#: A profile runs the model at least this many times, and more while under the time budget.
MIN_RUNS, MAX_RUNS, BUDGET_SECONDS = 3, 50, 0.5


class Profiles:
    """Measured profiles of one app, by version key (LRU), and the lock measurements take: one
    at a time per worker, as concurrent ones would skew each other."""

    def __init__(self) -> None:
        self.done: OrderedDict[Any, dict[str, Any]] = OrderedDict()
        self.lock = threading.Lock()
        self.measuring = threading.Lock()

    def get(self, key: Any) -> dict[str, Any] | None:
        with self.lock:
            return self.done.get(key)

    def put(self, key: Any, doc: dict[str, Any]) -> None:
        with self.lock:
            self.done[key] = doc
            self.done.move_to_end(key)
            while len(self.done) > PROFILES_KEPT:
                self.done.popitem(last=False)


def profiles() -> Profiles:
    return current_app.extensions.setdefault("convserve.profiles", Profiles())


def data_plane() -> DataPlane:
    return current_app.extensions["convserve"].serving


class LayerWeightsArgs(ma.Schema):
    max_filters = fields.Integer(
        load_default=256,
        validate=validate.Range(min=1, max=4096),
        metadata={"description": "return at most this many rows (filters, units) of each array"},
    )


class ArraySchema(ma.Schema):
    shape = fields.List(fields.Integer(), metadata={"description": "the whole array's shape"})
    data = fields.Raw(metadata={"description": "the first `max_filters` rows, nested lists"})
    truncated = fields.Boolean()


class LayerWeightsSchema(ma.Schema):
    model = fields.String()
    version = fields.Integer()
    layer = fields.String()
    type = fields.String()
    arrays = fields.Dict(keys=fields.String(), values=fields.Nested(ArraySchema))


class ProfileArgs(ma.Schema):
    refresh = fields.Boolean(
        load_default=False, metadata={"description": "measure again instead of the cached result"}
    )


class StepTimeSchema(ma.Schema):
    step = fields.String(metadata={"description": "the name the step's output is stored under"})
    layers = fields.List(
        fields.String(),
        metadata={
            "description": "the spec's layers it computes (a conv with its folded norm "
            "and fused activation is one step)"
        },
    )
    ms = fields.Float(metadata={"description": "median wall time, milliseconds"})
    share = fields.Float(metadata={"description": "fraction of the whole run"})


class ProfileSchema(ma.Schema):
    model = fields.String()
    version = fields.Integer()
    batch = fields.Integer()
    runs = fields.Integer()
    total_ms = fields.Float()
    measured_at = fields.String(metadata={"format": "date-time"})
    cached = fields.Boolean()
    steps = fields.List(fields.Nested(StepTimeSchema))


@blp.route("/<name>/versions/<ref>/layers/<layer>/weights", methods=["GET"])
@blp.arguments(LayerWeightsArgs, location="query")
@blp.response(200, LayerWeightsSchema)
def layer_weights(args: dict[str, Any], name: str, ref: str, layer: str) -> dict[str, Any]:
    """One layer's stored arrays as JSON, e.g. a conv's `weight` (out × in/groups × k…).

    Rows past `max_filters` are left out (`truncated`), so drawing a wide layer's first filters
    does not move the whole array.
    """
    model = data_plane().model(name, ref, check_state=False)  # reading, not serving
    node = model.arch.by_name.get(layer)
    if node is None:
        raise NotFound(
            f"{name} v{model.number} has no layer {layer!r}; its layers are "
            + ", ".join(n.name for n in model.arch.nodes)
        )
    prefix = layer + "."
    arrays = {}
    for key, value in model.plan.weights.items():
        if key.startswith(prefix) and "." not in key[len(prefix) :]:
            head = value[: args["max_filters"]] if value.ndim else value
            arrays[key[len(prefix) :]] = {
                "shape": list(value.shape),
                "data": np.asarray(head, dtype=np.float32).tolist(),
                "truncated": bool(value.ndim and len(value) > args["max_filters"]),
            }
    return {
        "model": model.name,
        "version": model.number,
        "layer": layer,
        "type": node.layer.type,
        "arrays": arrays,
    }


def measure(model: LoadedModel) -> dict[str, Any]:
    """Time every step of the model's compiled plan at batch 1 on a fixed random input."""
    x = np.random.default_rng(0).standard_normal((1, *model.arch.input_shape), np.float32)
    start = time.perf_counter()
    model.plan.profile(x, 1)  # also learns how long one run takes
    once = time.perf_counter() - start
    runs = int(min(MAX_RUNS, max(MIN_RUNS, BUDGET_SECONDS // max(once / 2, 1e-6))))
    timed = model.plan.profile(x, runs)
    total = sum(t for _, t in timed) or 1e-12
    return {
        "model": model.name,
        "version": model.number,
        "batch": 1,
        "runs": runs,
        "total_ms": total * 1e3,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "steps": [
            {"step": s.name, "layers": list(s.layers), "ms": t * 1e3, "share": t / total}
            for s, t in timed
        ],
    }


@blp.route("/<name>/versions/<ref>/profile", methods=["GET"])
@requires("predict")  # it runs the model, as a prediction does
@blp.arguments(ProfileArgs, location="query")
@blp.response(200, ProfileSchema)
def profile(args: dict[str, Any], name: str, ref: str) -> dict[str, Any]:
    """Where the engine spends its time, step by step, for one input (batch 1).

    Measured by this server process the first time it is asked (a few runs, about half a
    second), then answered from its cache (`cached: true`) until `refresh=true`. Steps are the
    compiled plan's: a batch norm folded into the conv before it and an activation fused into it
    are timed with that conv, and `layers` names them all.
    """
    model = data_plane().model(name, ref)
    cache = profiles()
    hit = None if args["refresh"] else cache.get(model.version.key)
    if hit is not None:
        return {**hit, "cached": True}
    with cache.measuring:
        doc = measure(model)
    cache.put(model.version.key, doc)
    return {**doc, "cached": False}
