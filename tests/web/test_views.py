"""The web pages through Flask's test client (no browser): what they render, and who may see
them."""

from __future__ import annotations

import re

from tests.helpers.http import register


def test_pages_render_the_registry(client):
    assert register(client).status_code == 201
    assert client.put("/v1/models/lenet/aliases/production", json={"version": 1}).status_code == 200
    index = client.get("/").get_data(as_text=True)
    assert 'href="/models/lenet"' in index and "production → v1" in index
    version = client.get("/models/lenet/versions/production").get_data(as_text=True)
    assert "each spanning all 3 input maps" in version  # conv2's explain, in the layer table
    assert "16,644" in version  # total params
    for page in ("kernels", "classify"):
        assert client.get(f"/models/lenet/versions/1/{page}").status_code == 200
    assert client.get("/editor").status_code == 200 and client.get("/register").status_code == 200


def test_unknown_model_or_version_is_a_404_page(client):
    resp = client.get("/models/ghost")
    assert resp.status_code == 404 and resp.mimetype == "text/html"
    assert "ghost" in resp.get_data(as_text=True)
    assert register(client).status_code == 201
    assert client.get("/models/lenet/versions/7").status_code == 404


def test_embedded_json_cannot_close_its_script_tag(client):
    spec = {
        "input": {"name": "image", "shape": [1, 4, 4]},
        "description": "</script><script>alert(1)</script>",
        "layers": [{"name": "flatten", "type": "flatten"}],
    }
    from service.architecture import Architecture
    from service.weights import dump_npz

    weights = dump_npz(Architecture.from_spec(spec).random_weights(0))
    assert register(client, "xss", spec=spec, weights=weights).status_code == 201
    page = client.get("/models/xss/versions/1").get_data(as_text=True)
    assert "<script>alert(1)" not in page


def test_assets_are_fingerprinted_and_cached(client):
    page = client.get("/editor").get_data(as_text=True)
    css = re.search(r'href="(/ui/static/app\.css\?v=[0-9a-f]{12})"', page).group(1)
    resp = client.get(css)
    assert resp.status_code == 200 and resp.cache_control.max_age == 365 * 86400
    assert '"/ui/static/common.js":"/ui/static/common.js?v=' in page  # the import map
    assert client.get("/ui/static/app.css").cache_control.max_age is None  # revalidated


def test_pages_are_refused_when_reads_need_a_token(make_app):
    client = make_app(reads_need_token=True, admin_token="s3cret").test_client()
    resp = client.get("/")
    assert resp.status_code == 401 and "CONVSERVE_READS_NEED_TOKEN" in resp.get_data(as_text=True)
    assert client.get("/models/digits/versions/1").status_code == 401
    assert client.get("/register").status_code == 200
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200


def test_model_page_offers_to_compare_versions_only_when_there_are_two(client):
    assert register(client).status_code == 201
    page = client.get("/models/lenet").get_data(as_text=True)
    script = '<script type="module" src="/ui/static/diff.js'
    assert 'id="compare"' not in page and script not in page  # one version: nothing to compare
    assert register(client).status_code == 201
    assert register(client).status_code == 201
    page = client.get("/models/lenet").get_data(as_text=True)
    assert '<form id="compare"' in page and script in page
    assert '<label for="compare-from">' in page and '<label for="compare-to">' in page
    # default: the previous version against the newest
    start = page.index('id="compare-from"')
    from_select = page[start : page.index("</select>", start)]
    start = page.index('id="compare-to"')
    to_select = page[start : page.index("</select>", start)]
    assert '<option value="2" selected>' in from_select and "selected" not in from_select.replace(
        '<option value="2" selected>', ""
    )
    assert '<option value="3" selected>' in to_select and "selected" not in to_select.replace(
        '<option value="3" selected>', ""
    )
