"""convserve's NumPy engine (its own 2 threads, BLAS at 1, as the server runs it) against
PyTorch (CPU, 2 threads, inference mode) and ONNX Runtime (2 intra-op threads), in one run, on
the same weights and inputs. With --busy, every case is timed again while another process keeps
one core busy, and the slowdown of each engine is printed.

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.13.0 -e '.[bench]'     # never a bare `torch`
    .venv-bench/bin/python bench/engine.py                      # --help for options

Prints, per case: median time of each engine after warm-up, the ratios convserve/torch and
convserve/ORT, convserve's achieved GFLOP/s (2 × multiply-adds / time) next to this machine's
float32 GEMM rate measured in the same run, the largest relative difference of convserve's output
from PyTorch's, and each engine's peak extra memory for one call (resident memory
sampled every 0.2 ms in a fresh process, minus the same process's just before the call).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# As the server runs the engine: BLAS on one thread, the engine's own threads for parallelism,
# and its process settings. Before NumPy loads; a value already set wins (OPENBLAS_NUM_THREADS=2
# to compare BLAS threads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from service.runtime import tune_process  # noqa: E402

tune_process()

import numpy as np  # noqa: E402

from service.architecture import Architecture  # noqa: E402
from service.engine import compile_plan  # noqa: E402
from service.kernels import parallel  # noqa: E402
from service.runtime.blas import blas_info, blas_threads  # noqa: E402

THREADS = 2
PAGE = os.sysconf("SC_PAGE_SIZE")


def vgg_block() -> dict:
    conv = {"type": "conv2d", "in_channels": 64, "out_channels": 64, "kernel_size": 3, "padding": 1}
    return {
        "input": {"shape": [64, 112, 112]},
        "layers": [
            {"name": "conv1", **conv}, {"name": "relu1", "type": "relu"},
            {"name": "conv2", **conv}, {"name": "relu2", "type": "relu"},
        ],
    }  # fmt: skip


def zoo(name: str) -> Callable[[], dict]:
    return lambda: json.loads((ROOT / "models" / f"{name}.json").read_text())


CASES: dict[str, tuple[Callable[[], dict], int]] = {
    "lenet-b1": (zoo("lenet"), 1),
    "lenet-b256": (zoo("lenet"), 256),
    "resnet18-b1": (zoo("resnet18"), 1),
    "resnet18-b8": (zoo("resnet18"), 8),
    "vgg-block-b8": (vgg_block, 8),
}


# -- the same network in PyTorch and ONNX Runtime ----------------------------------------------


def torch_module(arch: Architecture, weights: dict[str, np.ndarray]):  # noqa: ANN201
    import torch
    from torch import nn

    def build(node) -> nn.Module:  # noqa: ANN001
        f, t = node.layer, node.layer.type
        if t.startswith("conv"):
            cls = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "conv3d": nn.Conv3d}[t]
            pad = f["padding"]
            pad = pad if pad == "same" else tuple(pad)
            return cls(f["in_channels"], f["out_channels"], f["kernel_size"], f["stride"], pad,
                       f["dilation"], f["groups"], f["bias"])  # fmt: skip
        if t.startswith("batchnorm"):
            return {"batchnorm1d": nn.BatchNorm1d, "batchnorm2d": nn.BatchNorm2d,
                    "batchnorm3d": nn.BatchNorm3d}[t](f["num_features"], eps=f["eps"])  # fmt: skip
        if t.startswith("maxpool"):
            return nn.MaxPool2d(f["kernel_size"], f["stride"], f["padding"], f["dilation"],
                                ceil_mode=f["ceil_mode"])  # fmt: skip
        if t.startswith("avgpool"):
            return nn.AvgPool2d(f["kernel_size"], f["stride"], f["padding"], f["ceil_mode"],
                                f["count_include_pad"])  # fmt: skip
        simple = {
            "relu": nn.ReLU, "relu6": nn.ReLU6, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
            "flatten": nn.Flatten, "dropout": nn.Identity,
        }  # fmt: skip
        if t in simple:
            return simple[t]()
        if t == "global_avgpool":
            return nn.AdaptiveAvgPool2d(1)
        if t == "linear":
            return nn.Linear(f["in_features"], f["out_features"], f["bias"])
        if t == "softmax":
            return nn.Softmax(dim=1)
        if t in ("add", "concat"):
            return nn.Identity()
        raise SystemExit(f"bench: no PyTorch twin for {t}")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(build(n) for n in arch.nodes)

        def forward(self, x):  # noqa: ANN001, ANN202
            env = {arch.input_name: x}
            for node, mod in zip(arch.nodes, self.layers, strict=True):
                args = [env[i] for i in node.inputs]
                if node.layer.type == "add":
                    out = args[0]
                    for a in args[1:]:
                        out = out + a
                elif node.layer.type == "concat":
                    out = torch.cat(args, 1)
                else:
                    out = mod(args[0])
                env[node.name] = out
            return env[arch.output]

    net = Net()
    state = {}
    for i, node in enumerate(arch.nodes):
        for key in net.layers[i].state_dict():
            if key != "num_batches_tracked":
                state[f"layers.{i}.{key}"] = torch.from_numpy(weights[f"{node.name}.{key}"])
    net.load_state_dict(state, strict=False)
    return net.eval()


def engines(
    arch: Architecture, weights: dict, x: np.ndarray, want: set[str]
) -> dict[str, Callable]:
    runs: dict[str, Callable] = {}
    if "convserve" in want:
        plan = compile_plan(arch, weights)
        runs["convserve"] = lambda: plan.run(x)
    if want & {"torch", "ort"}:
        import torch

        torch.set_num_threads(THREADS)
        net = torch_module(arch, weights)
        tx = torch.from_numpy(x)
        if "torch" in want:

            def run_torch() -> np.ndarray:
                with torch.inference_mode():
                    return net(tx).numpy()

            runs["torch"] = run_torch
        if "ort" in want:
            import onnxruntime as ort

            path = Path(tempfile.mkdtemp()) / "model.onnx"
            with torch.inference_mode():
                torch.onnx.export(net, (tx,), str(path), input_names=["x"], dynamo=False,
                                  dynamic_axes={"x": {0: "n"}})  # fmt: skip
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = THREADS, 1
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            runs["ort"] = lambda: session.run(None, {"x": x})[0]
    return runs


# -- measuring ---------------------------------------------------------------------------------


def median_seconds(fn: Callable, budget: float = 2.0, repeats: int = 15) -> float:
    """Median over `repeats` timings, each of enough calls to last ≥ 10 ms (tiny cases)."""
    for _ in range(3):
        fn()  # warm-up: first-call allocations, lazy compiles, caches
    t = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t, 1e-7)
    inner = max(1, int(0.01 / once))
    repeats = max(3, min(repeats, int(budget / (once * inner))))
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t) / inner)
    return statistics.median(samples)


def gemm_rate(n: int = 2048) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    return 2 * n**3 / median_seconds(lambda: a @ a, repeats=7) / 1e9


def case_inputs(case: str) -> tuple[Architecture, dict, np.ndarray]:
    spec_fn, batch = CASES[case]
    arch = Architecture.from_spec(spec_fn())
    weights = arch.random_weights(seed=0)
    x = np.random.default_rng(1).standard_normal((batch, *arch.input_shape)).astype(np.float32)
    return arch, weights, x


def peak_extra_mib(engine: str, case: str) -> float | None:
    """Run one call in a fresh process; its RSS high-water mark growth, in MiB."""
    out = subprocess.run(
        [sys.executable, __file__, "--probe-memory", engine, case],
        capture_output=True, text=True, timeout=600, env=os.environ,
    )  # fmt: skip
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def probe_memory(engine: str, case: str) -> None:
    """Resident memory while one call runs, sampled every 0.2 ms, minus just before it."""
    arch, weights, x = case_inputs(case)
    run = engines(arch, weights, x, {engine})[engine]
    run()  # first-call set-up (lazy allocations, caches) is not per-call memory
    gc.collect()
    before = peak = _rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss())
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    t = time.perf_counter()
    while True:  # short calls are repeated so the sampler sees them
        out = run()
        if time.perf_counter() - t > 0.2:
            break
        del out
    done.set()
    sampler.join()
    print((peak - before) / 2**20)


class busy_core:
    """Another process spinning on one core while the block runs (a noisy neighbour)."""

    def __enter__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--engines", default="convserve,torch,ort")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-process memory probes")
    ap.add_argument("--probe-memory", nargs=2, metavar=("ENGINE", "CASE"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--busy", action="store_true", help="also time each case with one core kept busy"
    )
    args = ap.parse_args()
    parallel.set_threads(THREADS if blas_threads() == 1 else 1)
    if args.probe_memory:
        probe_memory(*args.probe_memory)
        return
    want = set(args.engines.split(","))
    info = blas_info()
    print(f"convserve engine benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"Python {platform.python_version()}, NumPy {np.__version__}, BLAS {info}, "
          f"{blas_threads()} BLAS thread(s), {parallel.threads()} engine thread(s)")  # fmt: skip
    versions = []
    if "torch" in want:
        import torch

        versions.append(f"PyTorch {torch.__version__}")
    if "ort" in want:
        import onnxruntime

        versions.append(f"ONNX Runtime {onnxruntime.__version__}")
    rate = gemm_rate() * (parallel.threads() if blas_threads() == 1 else 1)
    print(
        ", ".join(versions) + f"; float32 GEMM 2048³ via NumPy: {rate:.0f} GFLOP/s "
        f"(one BLAS thread's rate × engine threads)\n"
    )
    head = (
        f"{'case':<14}{'convserve':>11}{'torch':>11}{'ORT':>11}{'cs/torch':>10}{'cs/ORT':>8}"
        f"{'GFLOP/s':>9}{'of GEMM':>9}{'max rel err':>12}{'peak MiB cs/torch/ORT':>24}"
    )
    if args.busy:
        head += f"{'busy/quiet cs/torch/ORT':>26}"
    print(head)
    print("-" * len(head))
    for case in args.cases.split(","):
        arch, weights, x = case_inputs(case)
        runs = engines(arch, weights, x, want)
        times = {name: median_seconds(fn) for name, fn in runs.items()}
        outs = {name: np.asarray(fn()) for name, fn in runs.items()}
        err = "-"
        if "torch" in outs and "convserve" in outs:
            ref = outs["torch"]
            rel = np.abs(outs["convserve"] - ref).max() / max(np.abs(ref).max(), 1e-30)
            err = f"{rel:.1e}"
        flops = 2 * arch.totals()["macs"] * len(x)
        cs = times.get("convserve")
        gf = flops / cs / 1e9 if cs else float("nan")
        mem = (
            "/".join(
                f"{m:.0f}" if (m := peak_extra_mib(e, case)) is not None else "?"
                for e in ("convserve", "torch", "ort") if e in want
            )
            if not args.no_memory else "-"
        )  # fmt: skip

        ms = {
            e: f"{times[e] * 1e3:.3f}ms" if e in times else "-"
            for e in ("convserve", "torch", "ort")
        }
        ratio = {e: f"{cs / times[e]:.2f}×" if cs and e in times else "-" for e in ("torch", "ort")}
        busy = ""
        if args.busy:
            with busy_core():
                slow = {name: median_seconds(fn) for name, fn in runs.items()}
            busy = "/".join(
                f"{slow[e] / times[e]:.2f}×" for e in ("convserve", "torch", "ort") if e in times
            )
        print(
            f"{case:<14}{ms['convserve']:>11}{ms['torch']:>11}{ms['ort']:>11}{ratio['torch']:>10}"
            f"{ratio['ort']:>8}{gf:>9.1f}{gf / rate:>8.0%}{err:>12}{mem:>24}{busy:>26}"
        )


if __name__ == "__main__":
    main()
