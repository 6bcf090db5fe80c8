"""The service under load, swept like Triton's perf_analyzer: concurrency × request kind.

    flock -x /tmp/convserve-cpu.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        .venv-bench/bin/python bench/http_load.py              # --help for options

Starts its own server unless --url is given: `make serve`'s gunicorn (deploy/gunicorn.conf.py) on
a free loopback port, on a temporary SQLite registry holding LeNet and ResNet-18 with random
weights, stopped by its PID at the end. For each case and each concurrency (closed loop: that
many clients, each sending its next request when the last is answered) it prints throughput,
client-side latency p50/p90/p99, errors, and the server's own split of each request's time into
queue and compute with the average batch it ran in, from Triton's statistics extension
(`GET /v2/models/{name}/stats`, before and after the run; "-" where the server has none).

Cases: `lenet-png` and `resnet18-png` post one PNG to `/v1/models/{name}/predict`;
`resnet18-v2-b8` posts a batch of 8 to `/v2/models/{name}/infer` with the Open Inference
Protocol's binary tensor extension, as tritonclient does with `binary_data=True`.

Reference lines, measured in this process while the server idles, on the weights the server
holds (downloaded from it): ResNet-18 batches 1 and 8 in ONNX Runtime (exported through PyTorch
as bench/engine.py does; needs `torch==2.13.0` and `onnxruntime`, else skipped) and in
convserve's engine. The goals of issue 13 are printed as ratios against them.

The load generator is wrk (Debian: apt-get install wrk), which costs the server little CPU; without
it (or with --client python) a thread per client in this process does, which at thousands of
requests/s measures itself as much as the server. `--cases lenet-png --concurrency 16` is the
earlier wrk measurement of this script; `--raw` prints wrk's own report too. Not part of the test
suite: timings depend on the machine, and the load generator shares its cores with the server.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The server started here gets the user's environment, not the settings of this process, which
#: runs the in-process reference engine as the server does: BLAS on one thread, the engine's own
#: threads for parallelism (set before NumPy loads; a value already set wins).
USER_ENV = dict(os.environ)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from service.runtime import tune_process  # noqa: E402

tune_process()

import numpy as np  # noqa: E402
import requests  # noqa: E402

import service  # noqa: E402
from service.architecture import Architecture  # noqa: E402
from service.kernels import parallel  # noqa: E402
from service.runtime.blas import available_cpus, blas_info, blas_threads  # noqa: E402
from service.weights import dump_npz, load_npz  # noqa: E402

V2_BATCH = 8


# -- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP request, sent again and again."""

    path: str
    body: bytes
    headers: dict[str, str]
    images: int  # inputs it carries (images/s = requests/s × images)


def multipart_png(png: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def png_request(model: str, png: bytes) -> Request:
    body, ctype = multipart_png(png)
    return Request(f"/v1/models/{model}/predict", body, {"Content-Type": ctype}, 1)


def v2_binary_request(model: str, input_name: str, x: np.ndarray) -> Request:
    """Open Inference Protocol binary extension: a JSON header, then the raw little-endian tensor;
    `Inference-Header-Content-Length` says where the header ends."""
    raw = np.ascontiguousarray(x, dtype="<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return Request(f"/v2/models/{model}/infer", header + raw, headers, len(x))


def photo_png(size: int = 256, seed: int = 0) -> bytes:
    """A synthetic RGB photo-sized PNG: smooth gradients plus noise, so it compresses like a
    photograph (about 3 bytes a pixel) rather than like a flat test card."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([xx, yy, (xx + yy) / 2], axis=-1) * 200
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="PNG")
    return out.getvalue()


# -- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def own_server(workers: int | None, log_path: Path) -> Iterator[str]:
    """`make serve` without make: migrate a fresh SQLite file, then gunicorn with the deployment's
    config on a free loopback port; stopped by its PID (its process group) afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="convserve-bench-"))
    port = free_port()
    env = {
        **USER_ENV,
        "DATABASE_URL": f"sqlite:///{tmp / 'registry.db'}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PYTHONPATH": str(ROOT),
    }
    if workers:
        env["WEB_CONCURRENCY"] = str(workers)
    for var in ("CONVSERVE_ADMIN_TOKEN", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(var, None)  # loopback without a token accepts writes; the config owns the dir
    subprocess.run(
        [sys.executable, "-m", "service.cli", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "service.wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the server did not start; its log: {log_path}")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_model(base: str, name: str, zoo: str) -> dict[str, np.ndarray]:
    """Register `models/<zoo>.json` with random weights as `name` unless the server has it; the
    weights it serves (downloaded, so a reference engine runs the very same network)."""
    if requests.get(f"{base}/v1/models/{name}", timeout=10).status_code == 404:
        spec = (ROOT / "models" / f"{zoo}.json").read_bytes()
        weights = dump_npz(Architecture.from_spec(json.loads(spec)).random_weights(seed=0))
        files = {"spec": (f"{zoo}.json", spec), "weights": ("w.npz", weights)}
        headers = {}
        if token := os.environ.get("CONVSERVE_ADMIN_TOKEN"):
            headers["Authorization"] = f"Bearer {token}"
        resp = requests.post(
            f"{base}/v1/models/{name}/versions", files=files, headers=headers, timeout=300
        )
        if resp.status_code != 201:
            sys.exit(f"registering {name} failed: {resp.status_code} {resp.text[:500]}")
    resp = requests.get(f"{base}/v1/models/{name}/versions/latest/weights", timeout=300)
    resp.raise_for_status()
    return load_npz(resp.content)


def model_stats(base: str, name: str) -> dict | None:
    """The summed Triton statistics of every version of `name`, or None if the server has none."""
    try:
        resp = requests.get(f"{base}/v2/models/{name}/stats", timeout=10)
    except requests.RequestException:
        return None
    if resp.status_code != 200:
        return None
    total: dict = {"inference_count": 0, "execution_count": 0}
    for entry in resp.json().get("model_stats", []):
        total["inference_count"] += int(entry.get("inference_count", 0))
        total["execution_count"] += int(entry.get("execution_count", 0))
        for key, d in entry.get("inference_stats", {}).items():
            have = total.setdefault(key, {"count": 0, "ns": 0})
            have["count"] += int(d.get("count", 0))
            have["ns"] += int(d.get("ns", 0))
    return total


def in_scheduler(base: str, name: str) -> float | None:
    """Requests of `name` waiting for or running in a batch, over every worker, from /metrics
    (None: the server does not say)."""
    try:
        text = requests.get(f"{base}/metrics", timeout=10).text
    except requests.RequestException:
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("convserve_scheduler_requests{") and f'model="{name}"' in line
    ]
    return sum(values) if values else None


def settled_stats(base: str, name: str, quiet: float = 0.5, limit: float = 120.0) -> dict | None:
    """The statistics once requests still in flight when the clients stopped have finished
    (none left in the scheduler, then unchanged for `quiet` seconds): they belong to this
    measurement, not to the next."""
    deadline = time.monotonic() + limit
    while (in_scheduler(base, name) or 0) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    last, since = model_stats(base, name), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = model_stats(base, name)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


@dataclass
class ServerSplit:
    queue_ms: float | None = None  # per request, waiting for a batch slot
    compute_ms: float | None = None  # per request: input + infer + output
    batch: float | None = None  # inputs per engine execution


def split(before: dict | None, after: dict | None) -> ServerSplit:
    if before is None or after is None:
        return ServerSplit()

    def delta(key: str, part: str) -> int:
        return after.get(key, {}).get(part, 0) - before.get(key, {}).get(part, 0)

    out = ServerSplit()
    done = delta("success", "count")
    if done > 0:
        out.queue_ms = delta("queue", "ns") / done / 1e6
        parts = ("compute_input", "compute_infer", "compute_output")
        out.compute_ms = sum(delta(k, "ns") for k in parts) / done / 1e6
    runs = after["execution_count"] - before["execution_count"]
    if runs > 0:
        out.batch = (after["inference_count"] - before["inference_count"]) / runs
    return out


# -- load generators -------------------------------------------------------------------------------


@dataclass
class Load:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    raw: str = field(default="", repr=False)


WRK_SCRIPT = """
local f = io.open("{body}", "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "\\nBENCH {{\\"requests\\": %d, \\"us\\": %d, \\"errors\\": %d, " ..
    "\\"p50\\": %d, \\"p90\\": %d, \\"p99\\": %d}}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def wrk_load(base: str, req: Request, concurrency: int, seconds: float, tmp: Path) -> Load:
    body = tmp / f"body-{uuid.uuid4().hex}"
    body.write_bytes(req.body)
    script = tmp / f"{body.name}.lua"
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in req.headers.items())
    script.write_text(WRK_SCRIPT.format(body=body, headers=headers))
    out = subprocess.run(
        [
            "wrk",
            f"-t{min(2, concurrency)}",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "60s",
            "--latency",
            "-s",
            str(script),
            base + req.path,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    r = json.loads(line.removeprefix("BENCH "))
    return Load(
        r["requests"],
        r["us"] / 1e6,
        r["errors"],
        r["p50"] / 1e3,
        r["p90"] / 1e3,
        r["p99"] / 1e3,
        raw=out.replace(line, "").strip(),
    )


def python_load(base: str, req: Request, concurrency: int, seconds: float, tmp: Path) -> Load:
    """One thread and one keep-alive connection per client, in this process."""
    host = urlsplit(base)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        start.wait()
        while time.perf_counter() < stop_at[0]:
            t = time.perf_counter()
            try:
                conn.request("POST", req.path, req.body, req.headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status < 400
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
                ok = False
            latencies[i].append(time.perf_counter() - t)
            errors[i] += not ok
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    took = time.perf_counter() - began
    ms = np.array([x for per in latencies for x in per]) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99]) if len(ms) else (float("nan"),) * 3
    return Load(len(ms), took, sum(errors), p50, p90, p99)


# -- reference engines -----------------------------------------------------------------------------


def median_ms(fn: Callable[[], object], budget: float = 3.0) -> float:
    for _ in range(3):
        fn()
    samples = []
    deadline = time.perf_counter() + budget
    while len(samples) < 5 or (time.perf_counter() < deadline and len(samples) < 50):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def references(spec: dict, weights: dict[str, np.ndarray], want_ort: bool) -> dict[str, float]:
    """Milliseconds per call of ResNet-18 in-process: convserve's engine and ONNX Runtime, at
    batch 1 and batch 8, on the server's weights."""
    from service.engine import compile_plan

    arch = Architecture.from_spec(spec)
    weights = arch.check_weights(weights)
    out: dict[str, float] = {}
    xs = {
        b: np.random.default_rng(1).standard_normal((b, *arch.input_shape)).astype(np.float32)
        for b in (1, V2_BATCH)
    }
    parallel.set_threads(available_cpus() if blas_threads() == 1 else 1)
    plan = compile_plan(arch, weights)
    for b, x in xs.items():
        out[f"convserve-b{b}"] = median_ms(lambda x=x: plan.run(x))
    if want_ort:
        try:
            sys.path.insert(0, str(ROOT / "bench"))
            import engine as engine_bench  # bench/engine.py: the same network through PyTorch

            engine_bench.THREADS = available_cpus()
            for b, x in xs.items():
                run = engine_bench.engines(arch, weights, x, {"ort"})["ort"]
                out[f"ort-b{b}"] = median_ms(run)
        except ImportError as e:
            print(f"(ONNX Runtime reference skipped: {e}; needs torch==2.13.0 and onnxruntime)")
    return out


# -- the sweep -----------------------------------------------------------------------------------

HEAD = (
    f"\n{'case':<16}{'conc':>5}{'req/s':>9}{'img/s':>9}{'p50 ms':>9}{'p90 ms':>9}"
    f"{'p99 ms':>9}{'errors':>7}{'srv queue':>10}{'srv compute':>12}{'batch':>7}"
)


def case_requests(lenet: str, resnet: str, input_name: str) -> dict[str, tuple[str, Request]]:
    """Each case: the model whose statistics it moves, and the request it sends."""
    x = np.random.default_rng(2).standard_normal((V2_BATCH, 3, 224, 224)).astype(np.float32)
    return {
        "lenet-png": (lenet, png_request(lenet, (ROOT / "models/examples/7.png").read_bytes())),
        "resnet18-png": (resnet, png_request(resnet, photo_png())),
        "resnet18-v2-b8": (resnet, v2_binary_request(resnet, input_name, x)),
    }


def sweep(
    base: str,
    case: str,
    model: str,
    req: Request,
    levels: list[int],
    args: argparse.Namespace,
    load: Callable[..., Load],
    tmp: Path,
) -> list[dict]:
    """One case at every concurrency: a row printed and returned for each."""
    check = requests.post(base + req.path, data=req.body, headers=req.headers, timeout=120)
    if check.status_code != 200:
        sys.exit(f"{case}: {check.status_code} {check.text[:500]}")
    load(base, req, max(levels), args.warmup, tmp)  # every worker compiles the model first
    settled_stats(base, model)  # and the warm-up's last requests are done before measuring
    rows = []
    for c in levels:
        before = model_stats(base, model)
        got = load(base, req, c, args.duration, tmp)
        if not got.requests:  # none finished within the duration: no latency to report
            got.p50_ms = got.p90_ms = got.p99_ms = float("nan")
        srv = split(before, settled_stats(base, model) if before else None)
        rps = got.requests / got.seconds
        rows.append(
            {
                "case": case,
                "concurrency": c,
                "requests_per_s": rps,
                "images_per_s": rps * req.images,
                "p50_ms": got.p50_ms,
                "p90_ms": got.p90_ms,
                "p99_ms": got.p99_ms,
                "errors": got.errors,
                "server_queue_ms": srv.queue_ms,
                "server_compute_ms": srv.compute_ms,
                "server_batch": srv.batch,
            }
        )
        print(
            f"{case:<16}{c:>5}{rps:>9.0f}{rps * req.images:>9.0f}{fmt(got.p50_ms):>9}"
            f"{fmt(got.p90_ms):>9}{fmt(got.p99_ms):>9}{got.errors:>7}"
            f"{fmt(srv.queue_ms):>10}{fmt(srv.compute_ms):>12}{fmt(srv.batch):>7}",
            flush=True,
        )
        if args.raw and got.raw:
            print(got.raw)
    return rows


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None or v != v else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", help="a running server (default: start one)")
    ap.add_argument("--workers", type=int, help="WEB_CONCURRENCY of the server started here")
    ap.add_argument("--cases", default="lenet-png,resnet18-png,resnet18-v2-b8")
    ap.add_argument("--concurrency", default="1,2,4,8,16")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each case")
    ap.add_argument("--lenet-model", default="lenet")
    ap.add_argument("--resnet-model", default="resnet18")
    ap.add_argument(
        "--client", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python"
    )
    ap.add_argument("--no-ort", action="store_true", help="skip the reference engines")
    ap.add_argument("--raw", action="store_true", help="also print wrk's own reports")
    ap.add_argument("--json", help="also write every measurement to this file")
    args = ap.parse_args()
    cases = args.cases.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    unknown = set(cases) - {"lenet-png", "resnet18-png", "resnet18-v2-b8"}
    if unknown:
        ap.error(f"unknown cases: {', '.join(sorted(unknown))}")
    if args.client == "wrk" and shutil.which("wrk") is None:
        ap.error("wrk is not installed (Debian: apt-get install wrk); or --client python")
    load = wrk_load if args.client == "wrk" else python_load

    tmp = Path(tempfile.mkdtemp(prefix="convserve-load-"))
    server = (
        nullcontext(args.url.rstrip("/"))
        if args.url
        else own_server(args.workers, tmp / "server.log")
    )
    with server as base:
        print(f"convserve HTTP load sweep, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, against {base}")
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
            f"({available_cpus()} usable); Python {platform.python_version()}, "
            f"NumPy {np.__version__}, BLAS {blas_info()}"
        )
        print(f"convserve from {Path(service.__file__).parent}")
        workers = args.workers or os.environ.get("WEB_CONCURRENCY", "2 (default)")
        print(
            f"server: {'given by --url' if args.url else f'gunicorn, {workers} workers'}; "
            f"client: {args.client}; {args.duration:g} s per measurement"
        )

        lenet_w = resnet_w = None
        if "lenet-png" in cases:
            lenet_w = ensure_model(base, args.lenet_model, "lenet")
        if {"resnet18-png", "resnet18-v2-b8"} & set(cases) or not args.no_ort:
            resnet_w = ensure_model(base, args.resnet_model, "resnet18")
        resnet_spec = json.loads((ROOT / "models" / "resnet18.json").read_text())
        for name, held in ((args.lenet_model, lenet_w), (args.resnet_model, resnet_w)):
            config = requests.get(f"{base}/v1/models/{name}/config", timeout=10)
            if held is not None and config.status_code == 200:  # per-model batching, if offered
                print(f"config of {name}: {json.dumps(config.json())}")

        refs: dict[str, float] = {}
        if resnet_w is not None and not args.no_ort:
            refs = references(resnet_spec, resnet_w, want_ort=True)
            print(
                "in-process ResNet-18 (reference, this process, the server idle): "
                + ", ".join(
                    f"{k} {v:.1f} ms ({int(k.rsplit('-b', 1)[1]) * 1e3 / v:.0f} images/s)"
                    for k, v in refs.items()
                )
            )

        reqs = case_requests(args.lenet_model, args.resnet_model, resnet_spec["input"]["name"])
        print(HEAD + "\n" + "-" * (len(HEAD) - 1))
        rows = []
        for case in cases:
            model, req = reqs[case]
            rows += sweep(base, case, model, req, levels, args, load, tmp)
        print(
            "(srv: the server's own milliseconds per request in queue and in compute, and its "
            "average batch, from /v2/models/{name}/stats; '-': not offered)"
        )
        goals(rows, refs)
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": rows, "references_ms": refs}, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


def goals(rows: list[dict], refs: dict[str, float]) -> None:
    """Issue 13's service goals, as ratios measured in this run (or what a goal still needs)."""

    def row(case: str, c: int) -> dict | None:
        r = next((r for r in rows if r["case"] == case and r["concurrency"] == c), None)
        return r if r and r["requests_per_s"] > 0 else None

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print("\ngoals (issue 13), measured in this run:")
    lenet = row("lenet-png", 16)
    goal = "LeNet PNG at 16 clients ≥ 2,000 req/s with p99 ≤ 20 ms"
    if lenet:
        ok = lenet["requests_per_s"] >= 2000 and lenet["p99_ms"] <= 20
        print(
            f"  {goal}: {lenet['requests_per_s']:.0f} req/s, p99 {lenet['p99_ms']:.1f} ms: "
            f"{verdict(ok)}"
        )
    else:
        print(f"  {goal}: not measured (needs lenet-png at concurrency 16)")
    v2 = row("resnet18-v2-b8", 1)
    goal = "ResNet-18 batch 8 through /v2 infer, one client, ≤ 1.3× ORT in-process"
    if v2 and "ort-b8" in refs:
        ratio = v2["p50_ms"] / refs["ort-b8"]
        print(
            f"  {goal}: p50 {v2['p50_ms']:.1f} ms = {ratio:.2f}× ORT's {refs['ort-b8']:.1f} ms: "
            f"{verdict(ratio <= 1.3)}"
        )
    else:
        print(f"  {goal}: not measured (needs resnet18-v2-b8 at concurrency 1 and ORT)")
    png = row("resnet18-png", 16)
    goal = "ResNet-18 PNG at 16 clients ≥ 80 % of the engine's in-process batch-8 images/s"
    if png and "convserve-b8" in refs:
        engine_ips = V2_BATCH * 1e3 / refs["convserve-b8"]
        share = png["images_per_s"] / engine_ips
        print(
            f"  {goal}: {png['images_per_s']:.1f} images/s = {share:.0%} of "
            f"{engine_ips:.1f}, p99 {png['p99_ms']:.0f} ms: {verdict(share >= 0.8)}"
        )
    else:
        print(f"  {goal}: not measured (needs resnet18-png at concurrency 16, references on)")


if __name__ == "__main__":
    main()
