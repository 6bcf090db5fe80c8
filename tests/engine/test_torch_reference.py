"""The NumPy engine against PyTorch, on every case of tests/fixtures/torch_reference.npz.

The fixture file holds, per case, a spec, an input batch, PyTorch-named weights (batch norm's
`num_batches_tracked` included) and PyTorch's eval-mode output (computed in float64 from the
float32 inputs and weights, stored as float32); it is made by tests/fixtures/make_fixtures.py,
and these tests need no torch.

Error measure: the relative error of an engine output `a` against PyTorch's `b` is

    max|a - b| / max(max|b|, 1e-6)

i.e. the worst absolute difference, scaled by the largest reference magnitude (so values that are
tiny next to the rest of the tensor, like sigmoid(-100), are not held to a per-element relative
bound). Every case must agree to `TOLERANCE`.

    pytest tests/engine/test_torch_reference.py -s -k error_table  # the per-layer-type table
    python tests/engine/test_torch_reference.py                    # the same table
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from service.architecture import Architecture
from service.engine import compile_plan

FIXTURE = Path(__file__).parents[1] / "fixtures" / "torch_reference.npz"
TOLERANCE = 1e-5


def load_cases() -> dict[str, dict]:
    cases: dict[str, dict] = defaultdict(lambda: {"weights": {}})
    with np.load(FIXTURE, allow_pickle=False) as npz:
        for key in npz.files:
            name, _, rest = key.partition("/")
            if name == "meta":
                continue
            if rest.startswith("w/"):
                cases[name]["weights"][rest[2:]] = npz[key]
            else:
                cases[name][rest] = npz[key]
    for c in cases.values():
        c["spec"] = json.loads(str(c["spec"]))
        c["kind"] = str(c["kind"])
        c["capture"] = str(c["capture"])
    return dict(cases)


CASES = load_cases()
NAMES = sorted(CASES)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max(max|b|, 1e-6); inf when the shapes differ."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-6))


def build(name: str):
    c = CASES[name]
    arch = Architecture.from_spec(c["spec"])
    return c, arch, arch.check_weights(c["weights"])


def run(name: str, mode: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The engine's output in one of three ways: folded (default), unfolded, capturing."""
    c, arch, weights = build(name)
    x = c["input"].copy()
    if mode == "folded":
        return compile_plan(arch, weights).run(x), {}
    if mode == "unfolded":
        return compile_plan(arch, weights, fold_batchnorm=False).run(x), {}
    out, captured = compile_plan(arch, weights).run(x, capture=[c["capture"]])
    return out, captured


def check(out: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert out.shape == ref.shape, f"{what}: shape {out.shape}, PyTorch gives {ref.shape}"
    err = rel_err(out, ref)
    worst = np.unravel_index(np.argmax(np.abs(out.astype(np.float64) - ref)), ref.shape)
    assert err <= TOLERANCE, (
        f"{what}: relative error {err:.3g} > {TOLERANCE:g} "
        f"(at {tuple(int(i) for i in worst)}: engine {out[worst]!r}, PyTorch {ref[worst]!r})"
    )


# ------------------------------------------------------------------------------------ tests


def test_fixture_covers_every_layer_type() -> None:
    from service import catalogue

    used = {layer["type"] for c in CASES.values() for layer in c["spec"]["layers"]}
    assert set(catalogue.known_types()) <= used
    assert len(FIXTURE.read_bytes()) < 2_000_000


@pytest.mark.parametrize("name", NAMES)
def test_matches_torch(name: str) -> None:
    c, arch, weights = build(name)
    bn = [n.name for n in arch.nodes if n.layer.type.startswith("batchnorm")]
    for layer in bn:  # PyTorch's counter is in the file, accepted and dropped
        assert f"{layer}.num_batches_tracked" in c["weights"]
        assert f"{layer}.num_batches_tracked" not in weights
    x = c["input"].copy()
    out = compile_plan(arch, weights).run(x)
    check(out, c["out"], name)
    np.testing.assert_array_equal(x, c["input"], err_msg="the engine wrote over its input")


@pytest.mark.parametrize("name", NAMES)
def test_matches_torch_unfolded(name: str) -> None:
    out, _ = run(name, "unfolded")
    check(out, CASES[name]["out"], f"{name} (fold_batchnorm=False)")


@pytest.mark.parametrize("name", NAMES)
def test_matches_torch_capturing(name: str) -> None:
    c = CASES[name]
    out, captured = run(name, "capture")
    check(out, c["out"], f"{name} (capture={c['capture']})")
    check(captured[c["capture"]], c["capture_out"], f"{name}: captured {c['capture']}")


# ------------------------------------------------------------------------------ error table


def error_table() -> str:
    """Max relative error per layer type (the type each case is about), in each mode."""
    rows: dict[str, dict] = defaultdict(
        lambda: {"cases": 0, "folded": 0.0, "unfolded": 0.0, "capture": 0.0, "failed": []}
    )
    for name in NAMES:
        c = CASES[name]
        row = rows[c["kind"]]
        row["cases"] += 1
        for mode in ("folded", "unfolded", "capture"):
            try:
                out, captured = run(name, mode)
                err = rel_err(out, c["out"])
                if mode == "capture":
                    err = max(err, rel_err(captured[c["capture"]], c["capture_out"]))
            except Exception as exc:  # a crash is a failure too; the table says which
                row["failed"].append(f"{name}/{mode}: {type(exc).__name__}")
                err = float("inf")
            row[mode] = max(row[mode], err)
            if err > TOLERANCE and np.isfinite(err):
                row["failed"].append(f"{name}/{mode}: {err:.2g}")
    head = f"{'layer type':<16} {'cases':>5} {'folded':>10} {'unfolded':>10} {'capture':>10}"
    lines = [head, "-" * len(head)]
    for kind in sorted(rows):
        r = rows[kind]
        lines.append(
            f"{kind:<16} {r['cases']:>5} {r['folded']:>10.2e} {r['unfolded']:>10.2e} "
            f"{r['capture']:>10.2e}"
        )
        lines += [f"    FAILED {f}" for f in r["failed"]]
    return "\n".join(lines)


def test_error_table() -> None:
    """Prints the table (run with -s); the per-case tests above do the asserting."""
    print("\n" + error_table())


if __name__ == "__main__":
    print(error_table())
