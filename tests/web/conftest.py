"""Browser tests: the real server (`make serve` on a fresh SQLite file, seeded with the demo
model) driven by Debian's Chromium through Playwright. Skipped, with the reason, only when no
Chromium or no Playwright can be had; `.ci/run` installs Chromium when it is missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.helpers.live import live_server

CHROMIUM = os.environ.get("CONVSERVE_CHROMIUM", "/usr/bin/chromium")
#: Set to a folder to (re)write the README's screenshots there while the tests run.
SHOTS = os.environ.get("CONVSERVE_SCREENSHOTS")


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("web")
    # One worker, so per-layer timings cached by one request are seen by the next.
    with live_server(f"sqlite:///{tmp / 'registry.db'}", tmp, WEB_CONCURRENCY="1") as (base, _):
        yield base


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A page plus everything it asked for and every error it logged."""

    def __init__(self, page, base: str):
        self.page = page
        self.base = base
        self.hosts: set[str] = set()
        self.errors: list[str] = []
        page.on("request", lambda r: self.hosts.add(urlsplit(r.url).netloc))
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("console", self._console)
        page.on("response", self._response)

    def _console(self, message) -> None:
        # Chromium logs every 4xx as "Failed to load resource"; answers the page expects (a 422
        # from /v1/inspect while the spec is wrong) are not errors, a missing asset is (below).
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console error: {message.text}")

    def _response(self, response) -> None:
        path = urlsplit(response.url).path
        if response.status >= 400 and not path.startswith("/v1/"):
            self.errors.append(f"{response.status} for {response.url}")

    def goto(self, path: str):
        self.page.goto(self.base + path)
        return self.page

    def shot(self, name: str) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


@pytest.fixture
def web(browser, server) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    own = urlsplit(server).netloc
    # Anything for another host would fail offline anyway: refuse it at once, and record it.
    context.route(
        "**/*",
        lambda route: (
            route.continue_() if urlsplit(route.request.url).netloc in (own, "") else route.abort()
        ),
    )
    watched = Watched(context.new_page(), server)
    yield watched
    context.close()
    foreign = {h for h in watched.hosts if h and h != own}
    assert not foreign, f"the page asked other hosts: {sorted(foreign)}"
    assert not watched.errors, watched.errors
