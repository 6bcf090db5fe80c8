"""The data plane: whole requests (`predict`, `infer`, `activations`) → model ref → cached
compiled plan → batching scheduler → engine → results. /v1 and /v2 both come through here, so
they share one path, its metrics and Triton's statistics; the views only decode and encode.

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

from .. import metrics
from ..architecture import Architecture
from ..engine import Plan
from ..errors import InvalidInput, NotFound, TooLarge, Unavailable
from ..imaging import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_REQUEST_PIXELS,
    ImagePipeline,
    UndecodableImage,
)
from ..registry.store import Registry, Resolved, VersionGone
from ..weights import load_npz
from .batching import ModelConfig
from .defaults import BATCH_BYTES, CACHE_BYTES, MAX_BATCH
from .scheduler import Scheduler

log = logging.getLogger("convserve.serving")


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
        self._pinned: set[Any] = set()  # loaded through the repository API: never evicted

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

    def pin(self, key: Any) -> None:
        """Keep `key` (already loaded) whatever the budget says."""
        with self._lock:
            if key in self._entries:
                self._pinned.add(key)

    def drop(self, which: Callable[[LoadedModel], bool]) -> None:
        """Forget every model `which` selects (pinned or not)."""
        with self._lock:
            for key in [k for k, m in self._entries.items() if which(m)]:
                self._bytes -= self._entries.pop(key).nbytes
                self._pinned.discard(key)
            self._publish()

    def _evict(self, keep: Any) -> None:
        while self._bytes > self.budget_bytes:
            key = next((k for k in self._entries if k != keep and k not in self._pinned), None)
            if key is None:
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
        cache_bytes: int = CACHE_BYTES,
        batch_bytes: int = BATCH_BYTES,
        max_batch: int = MAX_BATCH,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS,
        batching: ModelConfig | None = None,
        config_ttl: float = 1.0,
    ):
        self.registry = registry
        self.cache = ModelCache(cache_bytes)
        self.batch_bytes = batch_bytes
        self.max_batch = max_batch
        self.max_image_pixels = max_image_pixels
        self.max_request_pixels = max_request_pixels
        #: Server-wide batching defaults; a model's stored config overrides them.
        self.batching = batching or ModelConfig()
        self.config_ttl = config_ttl
        self._configs: dict[str, tuple[float, ModelConfig, str | None]] = {}
        self.scheduler = Scheduler(self._execute, lambda m: (m.name, str(m.number)))

    # -- per-model configuration ------------------------------------------------------------

    def config(self, name: str) -> ModelConfig:
        """The model's batching config: stored, else the server's defaults. Each worker reads it
        at most once per `config_ttl` seconds, so a change reaches every worker within that."""
        return self._serving(name)[0]

    def state(self, name: str) -> str | None:
        """The model's repository state: "loaded", "unloaded" or None (loaded on demand)."""
        return self._serving(name)[1]

    def _serving(self, name: str) -> tuple[ModelConfig, str | None]:
        now = time.monotonic()
        hit = self._configs.get(name)
        if hit is not None and now - hit[0] < self.config_ttl:
            return hit[1], hit[2]
        doc, state = self.registry.serving_state(name)
        config = self.batching if doc is None else ModelConfig.parse(doc, self.batching)
        self._configs[name] = (now, config, state)
        return config, state

    def set_config(self, name: str, doc: Any, actor: str = "anonymous") -> ModelConfig:
        """Replace the model's config (fields not given take the server's defaults)."""
        config = ModelConfig.parse(doc, self.batching)
        self.registry.set_model_config(name, config.to_dict(), actor)
        self._configs.pop(name, None)
        return config

    # -- repository (Triton's load and unload) ------------------------------------------------

    def load(self, name: str) -> LoadedModel:
        """Compile the model's default version now and keep it (every worker does on its next
        sync); requests to an unloaded model are served again."""
        model = self.model(name, None, check_state=False)
        self.registry.set_model_state(name, "loaded")
        self._configs.pop(name, None)
        self.cache.pin(model.version.key)
        return model

    def unload(self, name: str) -> None:
        """Drop the model from memory in every worker (on its next sync) and refuse requests to
        it until it is loaded again."""
        self.registry.set_model_state(name, "unloaded")
        self._configs.pop(name, None)
        self.cache.drop(lambda m: m.name == name)

    def sync(self) -> None:
        """Bring this worker's cache in line with the repository states set by any worker."""
        for name, state in self.registry.model_states().items():
            if state == "unloaded":
                self.cache.drop(lambda m, name=name: m.name == name)
            elif state == "loaded":
                try:
                    self.cache.pin(self.model(name, None, check_state=False).version.key)
                except Exception as err:  # one broken model must not stop the others' sync
                    log.warning("sync: %s not loaded: %s", name, err)

    def start_sync(self, every: float = 2.0) -> None:
        """Run `sync` every `every` seconds on a daemon thread (one per serving process)."""

        def loop() -> None:
            while True:
                time.sleep(every)
                try:
                    self.sync()
                except Exception as err:  # the database may be briefly away; try again later
                    log.warning("sync failed: %s", err)

        threading.Thread(target=loop, name="repository-sync", daemon=True).start()

    # -- models --------------------------------------------------------------------------

    def model(self, name: str, ref: str | None = None, check_state: bool = True) -> LoadedModel:
        """The version `ref` names now (None: alias `default`, else the newest), compiled."""
        for _ in range(3):
            version = self.registry.resolve(name, ref)
            if check_state and self.state(name) == "unloaded":
                raise Unavailable(
                    f"model {name!r} is unloaded: POST /v2/repository/models/{name}/load to "
                    f"serve it",
                    retry_after=60,
                )
            try:
                return self.cache.get(version.key, lambda v=version: self._load(v))
            except VersionGone:
                # Deleted between resolving and loading: `latest` or an alias now names another
                # version (resolved again); a number now answers 404 from resolve.
                continue
        raise VersionGone(f"the versions of {name} changed while loading one; try again")

    def _load(self, version: Resolved) -> LoadedModel:
        spec, weights = self.registry.load_file(version)  # a temporary file, not bytes
        arch = Architecture.from_spec(spec)
        with weights.file:
            # stored weights passed the unpack limit in force when registered: not checked again
            arrays = load_npz(weights.file, max_bytes=None)
            plan = Plan(arch, arch.check_weights(arrays))
        pre = arch.image_preprocess
        pipeline = (
            ImagePipeline.from_description(pre, self.max_image_pixels, self.max_request_pixels)
            if pre
            else None
        )
        # Every layer's output is an upper bound on what one input keeps alive during a run.
        per_input = arch.totals()["activation_bytes"] + arch.input_bytes
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

    # -- whole requests -------------------------------------------------------------------

    def predict(
        self,
        name: str,
        ref: str | None,
        decode: Callable[[LoadedModel], np.ndarray],
        top_k: int,
    ) -> tuple[LoadedModel, list[dict[str, Any]]]:
        """Classify what `decode` reads for the model: `{"top": [...]}` per input, best first."""

        def check(model: LoadedModel) -> np.ndarray:
            self.check_classifier(model)
            return decode(model)

        return self._request(name, ref, check, lambda m, y: self._top(m, y, top_k))

    def infer(
        self,
        name: str,
        ref: str | None,
        decode: Callable[[LoadedModel], np.ndarray],
        encode: Callable[[LoadedModel, np.ndarray], Any],
        model: LoadedModel | None = None,
    ) -> tuple[LoadedModel, Any]:
        """The last layer's output for what `decode` reads, handed to `encode`. `model`: the
        version the caller already resolved for this request (it is not resolved again)."""

        def finish(model: LoadedModel, y: np.ndarray) -> Any:
            if model.arch.num_classes is not None:
                self.count_predictions(model, y.reshape(len(y), -1).argmax(axis=1))
            return encode(model, y)

        return self._request(name, ref, decode, finish, model=model)

    def activations(
        self,
        name: str,
        ref: str | None,
        decode: Callable[[LoadedModel], np.ndarray],
        layer: str,
    ) -> tuple[LoadedModel, np.ndarray]:
        """One layer's output for one input (batch axis dropped)."""

        def check(model: LoadedModel) -> np.ndarray:
            if layer != model.arch.input_name and layer not in model.arch.by_name:
                raise NotFound(
                    f"{model.name} v{model.number} has no layer {layer!r}; its layers are "
                    + ", ".join(model.layers)
                )
            x = decode(model)
            if len(x) != 1:
                raise InvalidInput(f"activations are drawn for one input at a time, not {len(x)}")
            return x

        return self._request(name, ref, check, lambda m, y: y[0], layer=layer)

    def _request(
        self,
        name: str,
        ref: str | None,
        decode: Callable[[LoadedModel], np.ndarray],
        finish: Callable[[LoadedModel, np.ndarray], Any],
        layer: str | None = None,
        model: LoadedModel | None = None,
    ) -> tuple[LoadedModel, Any]:
        """Resolve, decode, queue for the scheduler, finish; each phase timed for the statistics
        (Triton's: compute_input, queue, compute_infer, compute_output, success or fail)."""
        start = time.perf_counter()
        model = model or self.model(name, ref)
        labels = (model.name, str(model.number))
        try:
            x = decode(model)
            decoded = time.perf_counter()
            self._phase(labels, "compute_input", decoded - start)
            key = (model.version.key, layer)
            req = self.scheduler.submit(key, model, x, self.config(model.name), layer)
            self._phase(labels, "queue", req.queue_seconds)
            self._phase(labels, "compute_infer", req.compute_seconds)
            done = time.perf_counter()
            result = finish(model, req.result)
            end = time.perf_counter()
            self._phase(labels, "compute_output", end - done)
            self._phase(labels, "success", end - start)
            metrics.LAST_INFERENCE.labels(*labels).set(time.time())
            return model, result
        except Exception:
            self._phase(labels, "fail", time.perf_counter() - start)
            raise

    @staticmethod
    def _phase(labels: tuple[str, str], phase: str, seconds: float) -> None:
        metrics.PHASE_COUNT.labels(*labels, phase).inc()
        metrics.PHASE_SECONDS.labels(*labels, phase).inc(seconds)

    # -- running -------------------------------------------------------------------------

    def _execute(self, model: LoadedModel, x: np.ndarray, layer: str | None = None) -> np.ndarray:
        """What the scheduler runs for a batch: the output, or one layer's (see activations)."""
        if layer is None:
            return self.run(model, x)
        if layer == model.arch.input_name:
            return x  # the preprocessed input itself
        _, maps = model.plan.run(x, capture=[layer])
        return maps[layer]

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

    def _top(self, model: LoadedModel, scores: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        """One `{"top": [{index, label, probability}, …]}` per input, best first."""
        k = self.check_classifier(model)
        scores = scores.reshape(len(scores), k)
        probs = model.arch.probabilities(scores)
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
