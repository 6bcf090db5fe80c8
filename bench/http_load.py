"""Requests/s and latency percentiles of single-image predictions against a running server.

    make serve &                       # another terminal: 2 workers on 127.0.0.1:8000
    python bench/http_load.py               # registers LeNet (random weights) if missing, then wrk

Needs `wrk` (Debian: apt-get install wrk). Not part of the test suite: timings depend on the
machine, and the load generator shares its cores with the server.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def ensure_lenet(base: str, model: str) -> None:
    if requests.get(f"{base}/v1/models/{model}", timeout=10).status_code == 200:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.npz"
        subprocess.run(
            [sys.executable, "-m", "service.cli", "init-weights", "models/lenet.json", "-o", path],
            cwd=ROOT,
            check=True,
        )
        data = path.read_bytes()
    spec = (ROOT / "models" / "lenet.json").read_bytes()
    resp = requests.post(
        f"{base}/v1/models/{model}/versions",
        files={"spec": ("lenet.json", spec), "weights": ("w.npz", data)},
        timeout=60,
    )
    resp.raise_for_status()


def wrk_script(image: bytes, body_path: Path) -> str:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="7.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    body_path.write_bytes(body)
    return f"""
local f = io.open("{body_path}", "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"
local errors = 0
response = function(status, headers, body)
  if status ~= 200 then errors = errors + 1 end
end
"""


def parse(out: str) -> dict[str, float]:
    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
        "p99_ms": ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
        "non_2xx": float(m.group(1)) if (m := re.search(r"Non-2xx.*:\s+(\d+)", out)) else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default="lenet")
    ap.add_argument("--image", default=str(ROOT / "models" / "examples" / "7.png"))
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duration", default="20s")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    ensure_lenet(args.url, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "predict.lua"
        script.write_text(wrk_script(Path(args.image).read_bytes(), Path(tmp) / "body"))
        url = f"{args.url}/v1/models/{args.model}/predict"
        subprocess.run(
            ["wrk", "-t1", "-c1", "-d2s", "-s", script, url], check=True, capture_output=True
        )  # warm-up: every worker compiles the model
        out = subprocess.run(
            ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}",
             "--latency", "-s", script, url],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    print(out)
    print(json.dumps(parse(out), indent=2))


if __name__ == "__main__":
    main()
