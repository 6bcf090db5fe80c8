"""Hostile requests to the registry and predict: every one a 4xx naming what is wrong, never 5xx."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.helpers import lenet_weights, load_model_spec
from tests.helpers.http import assert_problem, register


@pytest.fixture
def lenet(client):
    assert register(client).status_code == 201
    return client


def cursor_of(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_invalid_json_to_put_alias_is_a_400(lenet):
    resp = lenet.put(
        "/v1/models/lenet/aliases/production", data="{nope", content_type="application/json"
    )
    body = assert_problem(resp, 400, "not valid JSON")
    assert "Traceback" not in json.dumps(body)


def test_put_alias_errors_name_the_field(lenet):
    resp = lenet.put("/v1/models/lenet/aliases/production", json={"version": "one"})
    body = assert_problem(resp, 400, "version")
    assert body["errors"][0]["field"] == "version"


@pytest.mark.parametrize(
    "method, path, kwargs",
    [
        ("post", "/v1/inspect", {}),
        ("post", "/v1/models/lenet/predict", {}),
        ("post", "/v1/models/lenet/versions/1/activations?layer=conv1", {}),
        ("put", "/v1/models/lenet/aliases/production", {}),
    ],
)
def test_json_nested_without_limit_is_a_400_everywhere(lenet, method, path, kwargs):
    deep = "[" * 100_000 + "]" * 100_000
    for body in (deep, '{"version": ' + deep + "}", '{"instances": ' + deep + "}"):
        resp = getattr(lenet, method)(path, data=body, content_type="application/json")
        assert_problem(resp, 400, "levels deep")


def test_a_spec_part_nested_without_limit_is_a_400(client):
    deep = "[" * 100_000 + "]" * 100_000
    assert_problem(register(client, spec=deep), 400, "levels deep")


@pytest.mark.parametrize(
    "ref", ["%C2%B2", "%D9%A3", "%EF%BC%91"]
)  # ², Arabic-Indic 3, full-width 1
def test_non_ascii_digits_are_not_version_numbers(lenet, ref):
    for path in (
        f"/v1/models/lenet/versions/{ref}",
        f"/v1/models/lenet/versions/{ref}/weights",
        f"/v1/models/lenet/versions/{ref}/layers",
    ):
        assert_problem(lenet.get(path), 404, "no alias")
    assert_problem(lenet.delete(f"/v1/models/lenet/versions/{ref}"), 404)
    assert_problem(
        lenet.post(f"/v1/models/lenet/versions/{ref}/predict", json={"instances": [[0] * 32]}),
        404,
    )
    resp = lenet.get(f"/v2/models/lenet/versions/{ref}")
    assert resp.status_code == 404, resp.data


@pytest.mark.parametrize("number", ["3000000000", "9223372036854775808", "9" * 40])
def test_numbers_beyond_the_column_are_404_on_every_path_that_takes_a_version(lenet, number):
    for path in (
        f"/v1/models/lenet/versions/{number}",
        f"/v1/models/lenet/versions/{number}/weights",
        f"/v1/models/lenet/versions/{number}/layers",
    ):
        assert_problem(lenet.get(path), 404, f"no version {number}")
    assert_problem(lenet.delete(f"/v1/models/lenet/versions/{number}"), 404)
    instances = {"instances": [np.zeros((32, 32)).tolist()]}
    assert_problem(lenet.post(f"/v1/models/lenet/versions/{number}/predict", json=instances), 404)
    assert_problem(
        lenet.post(f"/v1/models/lenet/versions/{number}/activations?layer=conv1", json=instances),
        404,
    )
    for path in (
        f"/v2/models/lenet/versions/{number}",
        f"/v2/models/lenet/versions/{number}/ready",
    ):
        assert lenet.get(path).status_code == 404
    assert lenet.post(f"/v2/models/lenet/versions/{number}/infer", data="{}").status_code == 404


@pytest.mark.parametrize("version", [3_000_000_000, 2**63, 10**30])
def test_an_alias_onto_a_number_beyond_any_version_is_a_400(lenet, version):
    resp = lenet.put("/v1/models/lenet/aliases/production", json={"version": version})
    assert_problem(resp, 400, "version")


@pytest.mark.parametrize(
    "cursor", [cursor_of(3_000_000_000), cursor_of(2**70), cursor_of(-1), cursor_of(True),
               cursor_of("\u0000"), cursor_of([[[]]]), "!!", cursor_of("x" * 70)],
)  # fmt: skip
def test_cursors_not_handed_out_are_400(lenet, cursor):
    assert_problem(lenet.get(f"/v1/models/lenet/versions?cursor={cursor}"), 400, "cursor")
    if cursor not in (cursor_of(3_000_000_000), cursor_of(2**70), cursor_of(-1)):
        assert_problem(lenet.get(f"/v1/models?cursor={cursor}"), 400, "cursor")


def test_a_deeply_nested_cursor_is_a_400(lenet):
    cursor = base64.urlsafe_b64encode(b"[" * 2000 + b"]" * 2000).decode()
    assert_problem(lenet.get(f"/v1/models/lenet/versions?cursor={cursor}"), 400, "cursor")


@pytest.mark.parametrize("name", ["%00", "a%00b", "%F0%9F%98%80", "x" * 300])
def test_names_no_model_can_have_are_404_without_asking_the_database(lenet, name):
    assert_problem(lenet.get(f"/v1/models/{name}"), 404)
    assert_problem(lenet.get(f"/v1/models/lenet/versions/{name}"), 404)
    assert_problem(lenet.delete(f"/v1/models/lenet/aliases/{name}"), 404)
    assert lenet.get(f"/v2/models/{name}").status_code == 404


def test_repeated_query_parameters_are_a_400(lenet):
    body = assert_problem(lenet.get("/v1/models?limit=1&limit=2"), 400, "'limit' is given 2 times")
    assert body["type"].endswith("malformed-request")
    assert_problem(lenet.get("/v1/models/lenet/versions?cursor=a&cursor=b"), 400, "'cursor'")
    resp = lenet.post(
        "/v1/models/lenet/predict?top_k=1&top_k=3",
        json={"instances": [np.zeros((32, 32)).tolist()]},
    )
    assert_problem(resp, 400, "'top_k' is given 2 times")


def test_two_spec_or_two_weights_parts_are_a_400(client):
    spec = json.dumps(load_model_spec("lenet")).encode()
    two_specs = {
        "spec": [(io.BytesIO(spec), "a.json"), (io.BytesIO(spec), "b.json")],
        "weights": (io.BytesIO(lenet_weights()), "w.npz"),
    }
    resp = client.post("/v1/models/lenet/versions", data=two_specs)
    assert_problem(resp, 400, "multipart part 'spec' is given 2 times")
    two_weights = {
        "spec": (io.BytesIO(spec), "a.json"),
        "weights": [
            (io.BytesIO(lenet_weights(0)), "w.npz"),
            (io.BytesIO(lenet_weights(1)), "v.npz"),
        ],
    }
    resp = client.post("/v1/models/lenet/versions", data=two_weights)
    assert_problem(resp, 400, "'weights' is given 2 times")
    spec_as_text_and_file = {
        "spec": [spec.decode(), (io.BytesIO(spec), "a.json")],
        "weights": (io.BytesIO(lenet_weights()), "w.npz"),
    }
    resp = client.post("/v1/models/lenet/versions", data=spec_as_text_and_file)
    assert_problem(resp, 400, "'spec' is given 2 times")
    assert client.get("/v1/models").get_json()["models"] == []


def png_of(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def image_files(*images: bytes) -> dict:
    return {"image": [(io.BytesIO(data), f"img{i}.png") for i, data in enumerate(images)]}


def test_a_request_has_a_pixel_budget(make_app):
    client = make_app(max_request_pixels=5_000).test_client()
    assert register(client).status_code == 201
    url = "/v1/models/lenet/predict"
    assert client.post(url, data=image_files(png_of(50, 50), png_of(50, 50))).status_code == 200
    resp = client.post(url, data=image_files(png_of(50, 50), png_of(50, 50), png_of(10, 10)))
    assert_problem(resp, 413, "the 3 images hold 5,100 pixels", "at most 5,000",
                   "CONVSERVE_MAX_REQUEST_PIXELS")  # fmt: skip
    resp = client.post(url, data=png_of(80, 80), content_type="image/png")
    assert_problem(resp, 413, "the image holds 6,400 pixels")


def test_the_pixel_limit_message_quotes_the_configured_limit(make_app):
    client = make_app(max_image_pixels=1_000).test_client()
    assert register(client).status_code == 201
    # 10,000 pixels: over twice the limit, where Pillow itself refuses and quotes 2,000.
    resp = client.post("/v1/models/lenet/predict", data=image_files(png_of(100, 100)))
    body = assert_problem(resp, 413, "img0.png is 10,000 pixels", "at most 1,000",
                          "CONVSERVE_MAX_IMAGE_PIXELS")  # fmt: skip
    assert "2000" not in body["detail"] and "2,000" not in body["detail"]


def test_forged_npy_headers_in_weights_are_a_422(client):
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        npy, {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000, 100_000)}
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("conv1.weight.npy", npy.getvalue() + b"\0" * 16)
    resp = register(client, weights=buf.getvalue())
    assert_problem(resp, 422, "claims shape (100000, 100000, 100000)")


def test_json_instances_beyond_what_the_model_can_take_are_refused_before_parsing(lenet):
    body = b'{"instances": [' + b"0," * 2_000_000 + b"0]}"  # LeNet takes 256 × 1,024 at most
    resp = lenet.post("/v1/models/lenet/predict", data=body, content_type="application/json")
    assert_problem(resp, 413, "more than", "at most 256 instances of 1,024 values",
                   "before being parsed")  # fmt: skip


def test_a_json_body_is_required_where_one_is_taken(lenet):
    url = "/v1/models/lenet/aliases/production"
    assert_problem(lenet.put(url), 400, "needs a JSON body")
    assert_problem(lenet.put("/v1/models/lenet/config"), 400, "needs a JSON body")
    assert_problem(lenet.put(url, data="version=1", content_type="text/plain"), 415, "text/plain")
