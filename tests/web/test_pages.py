"""Click through the web interface in Chromium: models → version → classify → inside →
kernels → editor → register, and /docs offline. Every test also asserts (in the `web` fixture)
that the page asked no other host and logged no error."""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pytest
import requests

from service.architecture import Architecture
from service.weights import dump_npz
from tests.helpers import ROOT
from tests.helpers.pages import PAGES

EXAMPLE = ROOT / "models" / "examples" / "7.png"

# A small residual network with a grouped and a 1×1 conv: skip edges, groups, channel mixing.
RESIDUAL = {
    "input": {"name": "image", "shape": [1, 8, 8]},
    "labels": ["a", "b", "c"],
    "layers": [
        {"name": "stem", "type": "conv2d", "in_channels": 1, "out_channels": 4,
         "kernel_size": 3, "padding": 1},
        {"name": "grouped", "type": "conv2d", "in_channels": 4, "out_channels": 6,
         "kernel_size": 3, "padding": 1, "groups": 2},
        {"name": "mix", "type": "conv2d", "in_channels": 6, "out_channels": 4, "kernel_size": 1},
        {"name": "add", "type": "add", "inputs": ["mix", "stem"]},
        {"name": "relu", "type": "relu"},
        {"name": "gap", "type": "global_avgpool"},
        {"name": "flatten", "type": "flatten"},
        {"name": "fc", "type": "linear", "in_features": 4, "out_features": 3},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def residual(server) -> str:
    weights = dump_npz(Architecture.from_spec(RESIDUAL).random_weights(1))
    files = {
        "spec": ("spec.json", json.dumps(RESIDUAL)),
        "weights": ("w.npz", io.BytesIO(weights)),
    }
    r = requests.post(f"{server}/v1/models/tiny-res/versions", files=files, timeout=30)
    assert r.status_code == 201, r.text
    return "tiny-res"


def test_models_list_links_to_versions(web):
    page = web.goto("/")
    row = page.locator("#models tbody tr", has_text="digits")
    assert row.locator("th").inner_text() == "digits"
    assert "production → v1" in row.inner_text()
    web.shot("models")
    row.get_by_role("link", name="digits", exact=True).click()
    page.wait_for_url("**/models/digits")
    assert page.locator("#versions tbody tr").count() == 1
    assert "production" in page.locator("#versions").inner_text()
    history = page.locator("#history-table tbody")
    history.wait_for()
    assert "register" in history.inner_text() and "set_alias" in history.inner_text()
    web.shot("model")


def test_model_page_compares_two_versions_layer_by_layer(web, server):
    arrays = Architecture.from_spec(RESIDUAL).random_weights(2)
    retrained = {**arrays, "mix.weight": arrays["mix.weight"] * 1.5}  # one layer retrained
    for weights in (arrays, retrained):
        files = {
            "spec": ("spec.json", json.dumps(RESIDUAL)),
            "weights": ("w.npz", io.BytesIO(dump_npz(weights))),
        }
        r = requests.post(f"{server}/v1/models/tiny-diff/versions", files=files, timeout=30)
        assert r.status_code == 201, r.text
    page = web.goto("/models/tiny-diff")
    assert page.get_by_label("From", exact=True).input_value() == "1"
    assert page.get_by_label("To", exact=True).input_value() == "2"
    rows = page.locator("#diff-table tbody tr")
    rows.first.wait_for()  # drawn on load, for the two newest versions
    assert rows.count() == len(RESIDUAL["layers"])
    changed = page.locator("#diff-table tbody tr[data-change=changed]")
    assert changed.count() == 1
    assert changed.locator("th").inner_text() == "mix"
    cells = changed.locator("td").all_inner_texts()
    assert cells[0].endswith("changed") and cells[1] == "weights"  # the word, not only a colour
    w = arrays["mix.weight"].astype(np.float64)
    b = arrays.get("mix.bias", np.zeros(1)).astype(np.float64)
    expected = 0.5 * np.sqrt(np.sum(w**2) / (np.sum(w**2) + np.sum(b**2)))  # ‖0.5·W‖ / ‖(W, b)‖
    assert float(cells[-1].removesuffix(" %")) == pytest.approx(100 * expected, abs=0.06)
    assert page.locator("#diff-table tbody tr[data-change=same]").count() == rows.count() - 1
    assert "Params" in page.locator("#diff-totals").inner_text()
    web.shot("diff")
    # the same version on both sides: every layer the same
    page.get_by_label("From", exact=True).select_option("2")
    page.get_by_role("button", name="Compare").click()
    page.wait_for_function(
        "document.querySelectorAll('#diff-table tr[data-change=changed]').length === 0"
    )
    assert page.locator("#diff h3").inner_text() == "v2 → v2"


def test_version_page_draws_the_network_and_times_each_layer(web):
    page = web.goto("/models/digits/versions/1")
    table = json.loads(page.locator("#version-data").text_content())["table"]
    n = len(table["layers"])
    assert page.locator("svg.graph g.node").count() == n + 1  # + the input
    labels = page.locator("svg.graph .edge-label").all_text_contents()
    assert labels[:2] == ["1×32×32", "16×32×32"]  # image → conv1 → bn1
    assert page.locator("#layers tbody tr").count() == n
    conv2 = page.locator('#layers tr[data-layer="conv2"]')
    assert "each spanning all 16 input maps" in conv2.inner_text()
    assert "4,608" in conv2.inner_text()
    assert page.locator("#totals").inner_text().count("19,258") == 1
    # keyboard: focus a box, Enter selects its row
    page.locator('svg.graph g.node[data-layer="conv2"]').focus()
    page.keyboard.press("Enter")
    assert "selected" in (conv2.get_attribute("class") or "")
    page.get_by_role("button", name="Measure per-layer time (batch 1)").click()
    page.wait_for_function("document.querySelector('#time-total').textContent !== ''")
    assert float(conv2.locator(".time").inner_text()) > 0  # conv2 + its folded bn2 + relu2
    assert page.locator('#layers tr[data-layer="bn2"] .time').inner_text() == "in conv2"
    assert "ms per image at batch 1" in page.locator("#profile-status").inner_text()
    page.evaluate("scrollTo(0, 0)")
    web.shot("version")


def test_residual_add_is_drawn_as_a_skip_edge(web, residual):
    page = web.goto(f"/models/{residual}/versions/1")
    assert page.locator("svg.graph path.edge.skip").count() == 1  # stem → add jumps 2 levels
    assert page.locator("svg.graph path.edge").count() == 9  # 8 layers, add reads two
    desc = page.locator("svg.graph desc").text_content()
    assert "merge several inputs" in desc


def test_classify_shows_top_k_and_the_input_as_the_model_saw_it(web):
    page = web.goto("/models/digits/versions/1/classify")
    page.set_input_files("#images", str(EXAMPLE))
    top1 = page.locator(".result .top1")
    top1.wait_for()
    assert top1.inner_text() == "7"
    assert page.locator(".result .bars li").count() == 5
    seen = page.locator('.result canvas[aria-label^="the preprocessed input"]')
    assert seen.get_attribute("aria-label") == "the preprocessed input, 1×32×32"
    # Inside: conv1's 16 maps; hovering a unit outlines its receptive field and the map it reads
    maps = page.locator("#layer-maps .map canvas")
    maps.first.wait_for()
    assert maps.count() == 16
    web.shot("classify")
    page.select_option("#inside-layer", "conv2")
    page.wait_for_function("document.querySelectorAll('#layer-maps .map canvas').length === 32")
    page.locator("#layer-maps .map canvas").nth(3).hover(position={"x": 40, "y": 40})
    unit = page.locator("#unit").inner_text()
    assert "conv2 map 3, unit (10, 10)" in unit
    assert "reads maps 0–15 of pool1" in unit
    assert "(receptive field 8×8)" in unit
    assert page.locator("#source-maps .map.reads").count() == 16
    window = page.locator("#seen .window")
    assert window.is_visible()
    # the flattened vector feeding fc: 32 maps of 4×4
    assert page.locator("#vector span").count() == 512
    assert "32 maps of 4×4" in page.locator("#vector-note").inner_text()
    web.shot("inside")


def test_kernels_one_tile_per_input_channel_of_each_filter(web, residual):
    page = web.goto("/models/digits/versions/1/kernels?layer=conv2")
    first = page.locator("#kernels .filter").first
    first.wait_for()
    assert page.locator("#kernels .filter").count() == 32
    assert first.locator(".tile").count() == 16  # conv2 reads pool1's 16 maps
    web.shot("kernels")
    page = web.goto(f"/models/{residual}/versions/1/kernels?layer=grouped")
    page.locator("#kernels .filter").first.wait_for()
    filters = page.locator("#kernels .filter")
    assert filters.count() == 6
    assert [filters.nth(i).locator(".tile").count() for i in range(6)] == [2] * 6  # 4 / groups 2
    assert "maps 2–3" in filters.nth(5).inner_text()  # the second group's filters
    page.select_option("#layer", "mix")
    page.wait_for_function("document.querySelector('#kernels table.mix') !== null")
    assert page.locator("#kernels table.mix tr").count() == 4
    assert page.locator("#kernels table.mix tr").first.locator(".tile").count() == 6
    assert "mixing of channels" in page.locator("#kernels").inner_text()


def test_editor_shows_errors_inline_and_a_fix_clears_them(web):
    page = web.goto("/editor")
    status = page.locator("#status")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Valid')")
    text = page.locator("#spec").input_value()
    broken = text.replace('"in_channels": 3', '"in_channels": 1', 1)
    assert broken != text
    page.locator("#spec").fill(broken)
    problem = page.locator("#errors .problem").first
    problem.wait_for()
    message = problem.inner_text()
    assert "conv2.in_channels" in message and "pool1 produces 3 feature maps" in message
    assert message.startswith("line ")
    assert page.locator("#spec").get_attribute("aria-invalid") == "true"
    web.shot("editor")
    page.locator("#spec").fill(text)
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Valid')")
    assert page.locator("#errors .problem").count() == 0
    assert "16,644 params" in status.inner_text()
    # what-if: twice the width, twice the resolution
    page.wait_for_selector("#whatif-macs")
    before = page.locator("#whatif-macs").inner_text()
    page.fill("#width", "2")
    page.fill("#resolution", "64")
    page.wait_for_function(f"document.querySelector('#whatif-macs')?.textContent !== {before!r}")
    page.wait_for_function(
        "document.querySelector('#whatif-table caption').textContent.includes('64×64')"
    )
    assert page.locator("#whatif-params").inner_text() != ""
    page.wait_for_function("document.querySelectorAll('#whatif-sweep li').length === 4")
    sweep = page.locator("#whatif-sweep").inner_text()
    assert "32×32" in sweep and "128×128" in sweep


def test_register_form_uploads_spec_and_weights(web, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(RESIDUAL))
    weights = tmp_path / "w.npz"
    weights.write_bytes(dump_npz(Architecture.from_spec(RESIDUAL).random_weights(2)))
    page = web.goto("/register")
    page.get_by_label("Model name").fill("from-the-form")
    page.set_input_files("#spec", str(spec))
    page.set_input_files("#weights", str(weights))
    page.get_by_label("Description").fill("uploaded in a browser")
    web.shot("register")
    page.get_by_role("button", name="Register").click()
    page.locator("#outcome .ok").wait_for()
    assert "Registered from-the-form version 1" in page.locator("#outcome").inner_text()
    page.get_by_role("link", name="open it").click()
    page.wait_for_url("**/models/from-the-form/versions/1")


def test_register_form_shows_validation_problems(web, tmp_path):
    bad = json.loads(json.dumps(RESIDUAL))
    bad["layers"][1]["in_channels"] = 3
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps(bad))
    weights = tmp_path / "w.npz"
    weights.write_bytes(dump_npz(Architecture.from_spec(RESIDUAL).random_weights(2)))
    page = web.goto("/register")
    page.get_by_label("Model name").fill("bad-one")
    page.set_input_files("#spec", str(spec))
    page.set_input_files("#weights", str(weights))
    page.get_by_role("button", name="Register").click()
    page.locator("#outcome .problem").first.wait_for()
    assert "grouped.in_channels" in page.locator("#outcome").inner_text()


def test_docs_render_swagger_ui_offline(web):
    page = web.goto("/docs")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "convserve" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock").count() > 10
    web.shot("docs")


@pytest.mark.parametrize("path", PAGES)
def test_pages_load_well_under_a_second(web, path):
    """From navigation to the key content drawn (scripts run, API answered), on the demo model,
    for a returning visitor (assets cached: their URLs are fingerprinted). The best of three, as
    the machine running the suite is shared."""
    web.goto(path)  # warm: the model compiled, as on a server that has answered once
    web.page.locator(PAGES[path]).first.wait_for()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        web.goto(path)
        web.page.locator(PAGES[path]).first.wait_for()
        times.append(time.perf_counter() - start)
    elapsed = min(times)
    # One second on a machine to itself; the suite often shares its cores with other work, and
    # then every process (Chromium's renderer first) gets a fraction of one. bench/web_pages.py
    # measures on a quiet machine.
    busy = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    print(f"{path}: {elapsed * 1e3:.0f} ms (load per CPU {busy:.1f})")
    assert elapsed < 1.0 * busy, f"{path} took {elapsed:.2f} s (load per CPU {busy:.1f})"


def test_unknown_model_page_is_a_404_page(server, web):
    r = requests.get(f"{server}/models/no-such-model", timeout=10)
    assert r.status_code == 404 and "text/html" in r.headers["Content-Type"]
    assert "no-such-model" in r.text
    assert np  # numpy imported for the fixtures' weights


UNLABELLED = """() => [
  ...[...document.querySelectorAll("input, select, textarea, button")].filter((e) =>
    !(e.labels && e.labels.length) && !e.getAttribute("aria-label") &&
    !(e.tagName === "BUTTON" && e.textContent.trim())),
  ...[...document.querySelectorAll("canvas, img")].filter((e) =>
    !e.getAttribute("aria-label") && !e.getAttribute("alt")),
  ...[...document.querySelectorAll("svg")].filter((e) =>
    !e.getAttribute("aria-labelledby") && !e.getAttribute("aria-label")),
].map((e) => e.outerHTML.slice(0, 120))"""


@pytest.mark.parametrize("path", [*PAGES, "/register"])
def test_every_control_and_drawing_has_a_label(web, path):
    page = web.goto(path)
    page.locator(PAGES.get(path, "form")).first.wait_for()
    if path.endswith("/classify"):
        page.set_input_files("#images", str(EXAMPLE))
        page.locator("#layer-maps .map canvas").first.wait_for()
    assert page.evaluate(UNLABELLED) == []
    # every page can be worked from the keyboard: Tab reaches its first control or link
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
