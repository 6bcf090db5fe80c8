"""How long each web page takes to show its key content, in Debian's Chromium, against the real
server (`make serve` on a fresh SQLite registry holding the demo model).

    flock -x /tmp/convserve-cpu.lock .venv/bin/python bench/web_pages.py [--runs 5]

Per page: the first visit (nothing cached) and the median and best of `--runs` returning visits
(assets cached: their URLs are fingerprinted), from navigation to the page's key content drawn
(scripts run, API answered). Prints the machine's load, which every number depends on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.helpers.live import live_server  # noqa: E402
from tests.helpers.pages import PAGES  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/registry.db"
        with live_server(db, Path(tmp), WEB_CONCURRENCY="1") as (base, _), sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page()
            print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            print(f"{'page':40} {'first':>8} {'median':>8} {'best':>8}")
            for path, ready in PAGES.items():
                times = []
                for _ in range(args.runs + 1):
                    start = time.perf_counter()
                    page.goto(base + path)
                    page.locator(ready).first.wait_for()
                    times.append((time.perf_counter() - start) * 1e3)
                first, rest = times[0], times[1:]
                print(
                    f"{path:40} {first:7.0f}ms {statistics.median(rest):7.0f}ms {min(rest):7.0f}ms"
                )
            browser.close()


if __name__ == "__main__":
    main()
