"""A compiled execution plan: the architecture's layers as a list of NumPy steps.

Compiling does, once, everything that does not depend on the input: each layer type turns its
fields and weights into a forward function; a batch norm that directly follows a layer able to
absorb a per-channel affine map (conv, linear) is folded into that layer's weights; a
value-by-value activation is handed to the conv before it, which applies it chunk by chunk;
buffers get a last use, so each is released as soon as no later step reads it; and an
elementwise step overwrites its input when nothing else can still see that memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from service.architecture import Architecture, Node
from service.catalogue.base import Op
from service.errors import InvalidInput

#: Capturing plans kept per plan (each capture set compiles one; a client may ask for any layer).
MAX_VARIANTS = 8


@dataclass(frozen=True)
class Step:
    name: str  # the name its output is stored under
    op: Op
    inputs: tuple[str, ...]
    inplace: bool  # call op(x, out=x)
    free: tuple[str, ...]  # names no later step reads
    layers: tuple[str, ...] = ()  # the spec's layers this step computes (a folded norm, a fused
    # activation and their producer are one step)


def _layer_weights(node: Node, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    prefix = node.name + "."
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


class Plan:
    """Runs batches `(N, *input_shape)` of float32 through a validated architecture."""

    def __init__(
        self,
        arch: Architecture,
        weights: Mapping[str, np.ndarray],
        *,
        keep: Iterable[str] = (),
        fold_batchnorm: bool = True,
        fuse_activations: bool = True,
    ):
        self.arch = arch
        self.weights = weights
        self.keep = frozenset(keep)
        unknown = self.keep - set(arch.by_name)
        if unknown:
            raise InvalidInput(f"no layer named {', '.join(sorted(map(repr, unknown)))}")
        self.fold_batchnorm = fold_batchnorm
        self.fuse_activations = fuse_activations
        #: Memory held by weights (the originals and any folded copies) and what ops derive.
        self.nbytes = 0
        self.steps = self._compile()
        # What run() reads, as plain tuples: per-step attribute lookups show on small models.
        self._program = [(s.name, s.op, s.inputs, s.inplace, s.free) for s in self.steps]
        self._input_shape = tuple(arch.input_shape)
        self._variants: dict[frozenset[str], Plan] = {}
        self._variants_lock = threading.Lock()  # run() may be called from several threads

    # -- compile ---------------------------------------------------------------------------

    def _compile(self) -> list[Step]:
        arch = self.arch
        layer_w = {n.name: _layer_weights(n, self.weights) for n in arch.nodes}
        folded_into: dict[str, str] = {}  # batch norm name -> producer folded into
        if self.fold_batchnorm:
            for node in arch.nodes:
                producer = self._sole_producer(node)
                if producer is None:
                    continue
                affine = node.kind.as_affine(node.layer, layer_w[node.name])
                if affine is None:
                    continue  # not a per-channel affine map
                new = producer.kind.absorb_affine(producer.layer, layer_w[producer.name], *affine)
                if new is not None:
                    layer_w[producer.name] = new
                    folded_into[node.name] = producer.name
        producers_folded = {p: bn for bn, p in folded_into.items()}
        held = [*self.weights.values(), *(a for w in layer_w.values() for a in w.values())]
        self.nbytes = sum({id(a): a.nbytes for a in held}.values())

        # One unit per step: [output name, node, inputs, fused activation (epilogue) or None].
        # A producer with a folded batch norm stores its result under the norm's name.
        units = [
            [producers_folded.get(n.name, n.name), n, n.inputs, None]
            for n in arch.nodes
            if n.name not in folded_into  # computed by its producer's step
        ]
        if self.fuse_activations:
            units = self._fuse_activations(units)
        raw: list[tuple[str, Op, tuple[str, ...], Node]] = []
        covers: list[tuple[str, ...]] = []
        for name, node, inputs, epilogue in units:
            kw = {} if epilogue is None else {"epilogue": epilogue}
            op = node.kind.compile(node.layer, layer_w[node.name], node.in_shapes, **kw)
            self.nbytes += getattr(op, "nbytes", 0)  # what the op may build (Winograd weights)
            raw.append((name, op, inputs, node))
            folded = producers_folded.get(node.name)
            covers.append(tuple(dict.fromkeys(n for n in (node.name, folded, name) if n)))

        # Liveness: the index of the last step reading each name; kept names live forever.
        forever = math.inf
        last_use: dict[str, float] = {arch.input_name: forever}
        for i, (name, _, inputs, _) in enumerate(raw):
            last_use.setdefault(name, -1)
            for r in inputs:
                last_use[r] = max(last_use.get(r, -1), i)
        for name in self.keep | {arch.output}:
            last_use[name] = forever

        # Alias groups: names whose arrays may share memory (views, in-place results).
        root = {arch.input_name: arch.input_name}
        members: dict[str, list[str]] = {arch.input_name: [arch.input_name]}
        steps: list[Step] = []
        for i, (name, op, inputs, node) in enumerate(raw):
            src_root = root[inputs[0]]
            # An op that takes `out=` overwrites its first input when no other name still
            # reads that memory (elementwise, so the other inputs may even be the same array).
            inplace = (
                node.kind.inplace
                and src_root != arch.input_name
                and all(last_use[m] <= i for m in members[src_root])
            )
            if inplace or node.kind.view:
                root[name] = src_root
                members[src_root].append(name)
            else:
                root[name] = name
                members[name] = [name]
            free = tuple(r for r in dict.fromkeys(inputs) if last_use[r] == i)
            steps.append(Step(name, op, inputs, inplace, free, covers[i]))
        return steps

    def _fuse_activations(self, units: list[list]) -> list[list]:
        """Hand each value-by-value activation to the step producing its input, when that step
        can apply it to its output chunk by chunk while the chunk is in cache and nothing else
        reads (or keeps) the value before the activation: a conv followed by a ReLU becomes one
        step that never writes the pre-ReLU map to memory."""
        readers = Counter(r for unit in units for r in dict.fromkeys(unit[2]))
        by_output = {unit[0]: unit for unit in units}
        kept = []
        for unit in units:
            name, node, inputs, _ = unit
            source = by_output.get(inputs[0]) if len(inputs) == 1 else None
            epilogue = node.kind.as_epilogue(node.layer)
            if (
                source is not None
                and source[3] is None
                and source[1].kind.takes_epilogue
                and epilogue is not None
                and readers[inputs[0]] == 1
                and inputs[0] not in self.keep
                and inputs[0] != self.arch.output
            ):
                del by_output[source[0]]
                source[0], source[3] = name, epilogue  # the producer now outputs the activation
                by_output[name] = source
            else:
                kept.append(unit)
        return kept

    def _sole_producer(self, node: Node) -> Node | None:
        """The layer feeding `node` when only `node` reads it and its own output is not needed."""
        if len(node.inputs) != 1:
            return None
        producer = self.arch.by_name.get(node.inputs[0])
        if producer is None or producer.name in self.keep or producer.name == self.arch.output:
            return None
        if self.arch.consumers[producer.name] != [node.name]:
            return None
        return producer

    # -- run -------------------------------------------------------------------------------

    def run(
        self, x: np.ndarray, capture: Iterable[str] = ()
    ) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
        """The output for a batch; with `capture`, also those layers' outputs, by name."""
        capture = frozenset(capture)
        if not capture <= self.keep:
            return self._variant(capture).run(x, capture)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1:] != self._input_shape:
            want = self._input_shape
            raise InvalidInput(
                f"the input has shape {list(x.shape)} but the model takes "
                f"[N, {', '.join(map(str, want))}] (a batch of {'×'.join(map(str, want))})"
            )
        env: dict[str, np.ndarray] = {self.arch.input_name: x}
        for name, op, inputs, inplace, free in self._program:
            if len(inputs) == 1:
                a = env[inputs[0]]
                env[name] = op(a, out=a) if inplace else op(a)
            else:
                args = [env[r] for r in inputs]
                env[name] = op(*args, out=args[0]) if inplace else op(*args)
            for r in free:
                del env[r]
        out = env[self.arch.output]
        if capture:
            return out, {name: env[name] for name in capture}
        return out

    __call__ = run

    def profile(self, x: np.ndarray, runs: int) -> list[tuple[Step, float]]:
        """Each step with its median wall time in seconds over `runs` runs of the batch `x`
        (after one untimed run that warms caches and the allocator)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        times: list[list[float]] = [[] for _ in self._program]
        clock = time.perf_counter
        for run in range(runs + 1):
            env: dict[str, np.ndarray] = {self.arch.input_name: x.copy()}
            for k, (name, op, inputs, inplace, free) in enumerate(self._program):
                args = [env[r] for r in inputs]
                start = clock()
                env[name] = op(*args, out=args[0]) if inplace else op(*args)
                if run:
                    times[k].append(clock() - start)
                for r in free:
                    del env[r]
        return [(s, float(np.median(t))) for s, t in zip(self.steps, times, strict=True)]

    def _variant(self, keep: frozenset[str]) -> Plan:
        """A plan that keeps more layers' outputs (no folding hides them); the last few are kept."""
        keep = keep | self.keep
        with self._variants_lock:
            variant = self._variants.pop(keep, None)
            if variant is None:
                # Unfolded, so it shares this plan's weights instead of holding folded copies.
                variant = Plan(self.arch, self.weights, keep=keep, fold_batchnorm=False)
            self._variants[keep] = variant  # most recently used last
            while len(self._variants) > MAX_VARIANTS:
                del self._variants[next(iter(self._variants))]
            return variant


def compile_plan(
    arch: Architecture, weights: Mapping[str, np.ndarray] | None = None, seed: int = 0, **kw
) -> Plan:
    """A plan for validated weights (see `Architecture.check_weights`), or random He weights."""
    return Plan(arch, weights if weights is not None else arch.random_weights(seed), **kw)
