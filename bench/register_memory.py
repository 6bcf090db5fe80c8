"""How much memory a gunicorn worker takes to register a VGG-16-sized model, on SQLite and on
PostgreSQL: the weights are random (the memory does not depend on the values), 528 MB of .npz.

    flock -x /tmp/convserve-cpu.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        .venv/bin/python bench/register_memory.py [--postgres URL] [--keep DIR]

One worker serves on a free loopback port; its peak resident memory (VmHWM, reset through
/proc/<pid>/clear_refs before each step, Linux only) is read after registering with curl (which
streams the file) and after downloading the weights back. "extra" is the peak minus the worker's
resident memory just before the step; the goal is extra ≤ 1.5 × the file size.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.architecture import Architecture  # noqa: E402

MB = 1_000_000


def write_random_weights(spec: dict, path: Path) -> int:
    """A numpy.savez-compatible .npz of random float32 arrays, written one array at a time."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, ws in Architecture.from_spec(spec).weight_specs().items():
            arr = rng.standard_normal(ws.shape, dtype=np.float32) * np.float32(0.01)
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
    return path.stat().st_size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def worker_of(master: int) -> int:
    for _ in range(100):
        kids = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


def run(label: str, db_url: str, spec_path: Path, npz: Path, size: int) -> dict:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_TIMEOUT": "600",
    }
    env.pop("CONVSERVE_ADMIN_TOKEN", None)
    bin_ = Path(sys.executable).parent
    subprocess.run([bin_ / "convserve", "db", "upgrade"], env=env, check=True, capture_output=True)
    server = subprocess.Popen(
        [bin_ / "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "service.wsgi:app"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        worker = worker_of(server.pid)
        urllib.request.urlopen(base + "/v1/models", timeout=5).read()  # warm the worker up
        before = status(worker)["VmRSS"]
        reset_peak(worker)
        t0 = time.perf_counter()
        out = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
             "-F", f"spec=@{spec_path}", "-F", f"weights=@{npz}",
             base + "/v1/models/vgg16/versions"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        after = status(worker)
        if out.stdout != "201":
            raise RuntimeError(f"{label}: registration answered {out.stdout}")
        register = {"seconds": seconds, "rss_before": before, "peak": after["VmHWM"],
                    "rss_after": after["VmRSS"]}  # fmt: skip
        before = after["VmRSS"]
        reset_peak(worker)
        t0 = time.perf_counter()
        got = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
             base + "/v1/models/vgg16/versions/1/weights"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        download = {"seconds": time.perf_counter() - t0, "rss_before": before,
                    "peak": status(worker)["VmHWM"]}  # fmt: skip
        if got[0] != "200" or int(got[1]) != size:
            raise RuntimeError(f"{label}: download answered {got}")
        return {"register": register, "download": download}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TEST_DATABASE_URL"),
        help="a PostgreSQL URL (default: $TEST_DATABASE_URL); a schema is made in it",
    )
    parser.add_argument("--keep", help="folder for the .npz (default: a temporary one)")
    args = parser.parse_args()
    spec = json.loads((ROOT / "models" / "vgg16.json").read_text())
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        npz = Path(tmp) / "vgg16.npz"
        spec_path = Path(tmp) / "vgg16.json"
        spec_path.write_text(json.dumps(spec))
        size = write_random_weights(spec, npz)
        print(f"VGG-16 random weights: {size / MB:.1f} MB ({npz})")
        results = {"SQLite": run("SQLite", f"sqlite:///{tmp}/registry.db", spec_path, npz, size)}
        if args.postgres:
            import sqlalchemy as sa

            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(args.postgres)
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            sep = "&" if "?" in args.postgres else "?"
            url = f"{args.postgres}{sep}options=-csearch_path%3D{schema}"
            try:
                results["PostgreSQL"] = run("PostgreSQL", url, spec_path, npz, size)
            finally:
                with admin.begin() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    print()
    print("| database | step | seconds | RSS before (MB) | peak (MB) | extra (MB) | extra / file |")
    print("|---|---|---|---|---|---|---|")
    for db, steps in results.items():
        for step, r in steps.items():
            extra = r["peak"] - r["rss_before"]
            print(f"| {db} | {step} | {r['seconds']:.1f} | {r['rss_before'] / MB:.0f} | "
                  f"{r['peak'] / MB:.0f} | {extra / MB:.0f} | {extra / size:.2f}× |")  # fmt: skip
        after = steps["register"]["rss_after"] / MB
        print(f"| {db} | RSS after registering: {after:.0f} MB | | | | | |")


if __name__ == "__main__":
    main()
