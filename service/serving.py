"""The data plane: model ref → cached compiled plan → batch run. /v1 predict and /v2 infer both
come through here.

Each request resolves its `{ref}` against the registry afresh (aliases move, and every worker
must see a move at once); only what a resolved version *is* gets cached: its compiled plan, keyed
by the version's id and content hashes, which never change.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import metrics
from .architecture import Architecture
from .catalogue.base import prod
from .engine import Plan
from .engine.kernels import softmax
from .errors import InvalidInput, NotFound, TooLarge
from .imaging import DEFAULT_MAX_PIXELS, ImagePipeline, UndecodableImage
from .registry.store import Registry, Resolved
from .weights import load_npz

log = logging.getLogger("convserve.serving")

FLOAT_BYTES = 4


@dataclass(frozen=True)
class LoadedModel:
    """A version ready to run: its architecture, compiled plan and image pipeline."""

    version: Resolved
    arch: Architecture
    plan: Plan
    pipeline: ImagePipeline | None  # None: the input is not an image
    nbytes: int
    chunk: int  # inputs per engine call, so one call's activations fit the batch budget

    @property
    def name(self) -> str:
        return self.version.model

    @property
    def number(self) -> int:
        return self.version.number

    @functools.cached_property
    def labels(self) -> list[str]:
        """Class names: the spec's labels, else the indices as text (built once per model)."""
        k = self.arch.num_classes or 0
        return self.arch.labels or [str(i) for i in range(k)]

    @property
    def layers(self) -> list[str]:
        return [self.arch.input_name, *(n.name for n in self.arch.nodes)]


def best_first(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k highest scores, best first (ties: lower index first)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]


class ModelCache:
    """Compiled models of this process, least recently used evicted beyond a byte budget.

    Threads asking for the same missing version wait for one compile instead of each doing it.
    A model bigger than the whole budget is still served: it evicts everything else.
    """

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self.evictions = 0
        self._entries: OrderedDict[Any, LoadedModel] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._loading: dict[Any, threading.Lock] = {}

    def get(self, key: Any, load: Callable[[], LoadedModel]) -> LoadedModel:
        with self._lock:
            hit = self._hit(key)
            if hit is not None:
                return hit
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                hit = self._hit(key)
                if hit is not None:
                    return hit
            try:
                model = load()
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self._entries[key] = model
                self._bytes += model.nbytes
                self._evict(keep=key)
                self._publish()
            metrics.MODEL_LOADS.inc()
            return model

    def _hit(self, key: Any) -> LoadedModel | None:
        model = self._entries.get(key)
        if model is not None:
            self._entries.move_to_end(key)
        return model

    def _evict(self, keep: Any) -> None:
        while self._bytes > self.budget_bytes and len(self._entries) > 1:
            key = next(iter(self._entries))
            if key == keep:
                break
            gone = self._entries.pop(key)
            self._bytes -= gone.nbytes
            self.evictions += 1
            metrics.MODEL_CACHE_EVICTIONS.inc()
            log.info("model cache: evicted %s v%d (%d bytes)", gone.name, gone.number, gone.nbytes)

    def _publish(self) -> None:
        metrics.MODEL_CACHE_ENTRIES.set(len(self._entries))
        metrics.MODEL_CACHE_BYTES.set(self._bytes)

    @property
    def entries(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def __contains__(self, key: Any) -> bool:
        return key in self._entries


class DataPlane:
    """Resolve, load (cached), run in memory-bounded chunks, and turn outputs into answers."""

    def __init__(
        self,
        registry: Registry,
        *,
        cache_bytes: int = 1 << 30,
        batch_bytes: int = 256 << 20,
        max_batch: int = 256,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.registry = registry
        self.cache = ModelCache(cache_bytes)
        self.batch_bytes = batch_bytes
        self.max_batch = max_batch
        self.max_image_pixels = max_image_pixels

    # -- models --------------------------------------------------------------------------

    def model(self, name: str, ref: str | None = None) -> LoadedModel:
        """The version `ref` names now (None: alias `default`, else the newest), compiled."""
        version = self.registry.resolve(name, ref)
        return self.cache.get(version.key, lambda: self._load(version))

    def _load(self, version: Resolved) -> LoadedModel:
        spec, data = self.registry.load(version)
        arch = Architecture.from_spec(spec)
        plan = Plan(arch, arch.check_weights(load_npz(data)))
        pre = arch.image_preprocess
        pipeline = ImagePipeline.from_description(pre, self.max_image_pixels) if pre else None
        # Every layer's output is an upper bound on what one input keeps alive during a run.
        per_input = arch.totals()["activation_bytes"] + prod(arch.input_shape) * FLOAT_BYTES
        chunk = max(1, self.batch_bytes // per_input)
        log.info("compiled %s v%d (%d weight bytes)", version.model, version.number, plan.nbytes)
        return LoadedModel(version, arch, plan, pipeline, plan.nbytes, chunk)

    def warm_up(self, refs: Iterable[str]) -> None:
        """Load `name` or `name:ref` models now; a missing one is logged, not fatal."""
        for item in refs:
            name, _, ref = item.partition(":")
            try:
                m = self.model(name, ref or None)
                log.info("warm-up: %s v%d loaded", m.name, m.number)
            except Exception as err:  # a bad warm-up entry must not keep the server down
                log.warning("warm-up: %s not loaded: %s", item, err)

    # -- inputs --------------------------------------------------------------------------

    def check_count(self, n: int, what: str) -> None:
        if n == 0:
            raise InvalidInput(f"the request holds no {what}")
        if n > self.max_batch:
            raise TooLarge(
                f"the request holds {n} {what}; at most {self.max_batch} per request "
                f"(CONVSERVE_MAX_BATCH)"
            )

    def images(self, model: LoadedModel, images: list[tuple[str, bytes]]) -> np.ndarray:
        """Named image files → the model's input batch, preprocessed as its spec says."""
        if model.pipeline is None:
            raise InvalidInput(
                f"{model.name} takes arrays of shape {list(model.arch.input_shape)}, not images: "
                f'send JSON {{"instances": [...]}}'
            )
        self.check_count(len(images), "images")
        try:
            return model.pipeline.batch(images)
        except UndecodableImage:
            metrics.IMAGE_DECODE_FAILURES.labels("undecodable").inc()
            raise
        except TooLarge:
            metrics.IMAGE_DECODE_FAILURES.labels("too_large").inc()
            raise

    def instances(self, model: LoadedModel, instances: Any) -> np.ndarray:
        """JSON arrays in the input shape (or [H, W] for a one-channel input) → a batch."""
        shape = tuple(model.arch.input_shape)
        if not isinstance(instances, list):
            raise InvalidInput('"instances" must be a list with one array per input')
        self.check_count(len(instances), "instances")
        try:
            x = np.asarray(instances, dtype=np.float32)
        except (ValueError, TypeError):
            raise InvalidInput(
                f"instances must be numbers in nested lists, each of shape {list(shape)} "
                f"(ragged lists or non-numbers were sent)"
            ) from None
        given = list(x.shape[1:]) if x.ndim > 1 else "a number"
        if shape[0] == 1 and x.ndim == len(shape):
            x = x[:, None]  # [H, W] for a one-channel input
        if x.shape[1:] != shape:
            raise InvalidInput(
                f"each instance must have shape {list(shape)}"
                + (" (or [H, W], as the input has one channel)" if shape[0] == 1 else "")
                + f", but instance 0 has shape {given}"
            )
        return self.finite(x)

    @staticmethod
    def finite(x: np.ndarray) -> np.ndarray:
        if not np.isfinite(x).all():
            bad = np.argwhere(~np.isfinite(x))[0]
            raise InvalidInput(f"the input holds NaN or infinity (first at index {bad.tolist()})")
        return x

    # -- running -------------------------------------------------------------------------

    def run(self, model: LoadedModel, x: np.ndarray) -> np.ndarray:
        """The output of the last layer, as it is, for a whole batch (in bounded chunks)."""
        start = time.perf_counter()
        chunk = model.chunk
        if len(x) <= chunk:
            out = model.plan.run(x)
        else:
            out = np.empty((len(x), *model.arch.output_shape), np.float32)
            for i in range(0, len(x), chunk):
                out[i : i + chunk] = model.plan.run(x[i : i + chunk])
        labels = (model.name, str(model.number))
        metrics.INFERENCE_DURATION.labels(*labels).observe(time.perf_counter() - start)
        metrics.INFERENCE_BATCH.labels(*labels).observe(len(x))
        return out

    def classify(self, model: LoadedModel, x: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        """One `{"top": [{index, label, probability}, …]}` per input, best first."""
        k = self.check_classifier(model)
        scores = self.run(model, x).reshape(len(x), k)
        probs = scores if model.arch.yields_probabilities else softmax(scores, axis=1)
        order = best_first(probs, top_k)
        labels = model.labels
        self.count_predictions(model, order[:, 0])
        return [
            {
                "top": [
                    {"index": int(i), "label": labels[i], "probability": float(str(p[i]))}
                    for i in row
                ]
            }
            for row, p in zip(order, probs, strict=True)
        ]

    @staticmethod
    def count_predictions(model: LoadedModel, top1: np.ndarray) -> None:
        """Count each input's best class (for per-class drift alerts)."""
        labels = model.labels
        version = str(model.number)
        for index, n in Counter(top1.tolist()).items():  # cheaper than np.unique for few inputs
            metrics.PREDICTIONS.labels(model.name, version, labels[index]).inc(n)

    @staticmethod
    def check_classifier(model: LoadedModel) -> int:
        k = model.arch.num_classes
        if k is None:
            shape = "×".join(map(str, model.arch.output_shape))
            raise InvalidInput(
                f"{model.name} v{model.number} outputs {shape} values per input, not a vector "
                f"of class scores: ask POST /v2/models/{model.name}/infer for the raw output"
            )
        return k

    def activations(self, model: LoadedModel, x: np.ndarray, layer: str) -> np.ndarray:
        """One layer's output for one input (batch axis dropped)."""
        if len(x) != 1:
            raise InvalidInput(f"activations are drawn for one input at a time, not {len(x)}")
        if layer == model.arch.input_name:
            return x[0]  # the preprocessed input itself
        if layer not in model.arch.by_name:
            raise NotFound(
                f"{model.name} v{model.number} has no layer {layer!r}; its layers are "
                + ", ".join(model.layers)
            )
        _, maps = model.plan.run(x, capture=[layer])
        return maps[layer][0]
