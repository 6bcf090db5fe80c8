"""POST …/predict and …/activations over HTTP: the three body forms, answers, every error."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from service.api.schemas import PredictResponseSchema
from service.architecture import Architecture
from service.engine import compile_plan
from service.imaging import ImagePipeline
from service.kernels import softmax
from service.weights import load_npz
from tests.helpers import ROOT, lenet_weights, load_model_spec, spec_of, upload
from tests.helpers.http import assert_problem, register

SEVEN = (ROOT / "models" / "examples" / "7.png").read_bytes()


def png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def digits(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [png(Image.fromarray(rng.integers(0, 256, (28, 28), np.uint8))) for _ in range(n)]


def files(*images: bytes, names=None) -> dict:
    names = names or [f"{i}.png" for i in range(len(images))]
    return {"image": [(io.BytesIO(b), n) for b, n in zip(images, names, strict=True)]}


def engine_probs(images: list[bytes], seed: int = 0) -> np.ndarray:
    """What the engine gives for the same images, preprocessed by hand from the spec."""
    arch = Architecture.from_spec(load_model_spec("lenet"))
    pipe = ImagePipeline.from_description(arch.image_preprocess)
    x = pipe.batch([(str(i), b) for i, b in enumerate(images)])
    return compile_plan(arch, arch.check_weights(load_npz(lenet_weights(seed)))).run(x)


@pytest.fixture
def lenet(client):
    assert register(client).status_code == 201
    return client


def test_predict_multipart_images_in_request_order(lenet):
    images = digits(3)
    resp = lenet.post("/v1/models/lenet/predict", data=files(*images))
    assert resp.status_code == 200, resp.data
    body = resp.get_json()
    assert body["model"] == "lenet" and body["version"] == 1
    assert len(body["predictions"]) == 3
    assert PredictResponseSchema().validate(body) == {}  # dumped without it: what it documents
    want = engine_probs(images)
    for pred, p in zip(body["predictions"], want, strict=True):
        top = pred["top"]
        assert len(top) == 5  # top_k defaults to 5
        order = np.argsort(-p, kind="stable")[:5]
        assert [t["index"] for t in top] == order.tolist()
        assert [t["label"] for t in top] == [str(i) for i in order]
        np.testing.assert_allclose([t["probability"] for t in top], p[order], rtol=1e-5)


def test_raw_image_body_and_json_instances_agree_with_multipart(lenet):
    (image,) = digits(1, seed=4)
    multipart = lenet.post("/v1/models/lenet/predict?top_k=10", data=files(image)).get_json()
    raw = lenet.post(
        "/v1/models/lenet/predict?top_k=10", data=image, content_type="image/png"
    ).get_json()
    arch = Architecture.from_spec(load_model_spec("lenet"))
    x = ImagePipeline.from_description(arch.image_preprocess)(image)
    for instance in (x.tolist(), x[0].tolist()):  # [C, H, W] and, one channel, [H, W]
        inst = lenet.post(
            "/v1/models/lenet/predict?top_k=10", json={"instances": [instance]}
        ).get_json()
        for other in (raw, inst):
            a = {t["index"]: t["probability"] for t in multipart["predictions"][0]["top"]}
            b = {t["index"]: t["probability"] for t in other["predictions"][0]["top"]}
            assert a.keys() == b.keys()
            np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-5)


def test_a_real_jpeg_round_trip(lenet):
    rng = np.random.default_rng(9)
    img = Image.fromarray(rng.integers(0, 256, (40, 50, 3), np.uint8))
    data = png(img, "JPEG", quality=90)
    resp = lenet.post("/v1/models/lenet/predict?top_k=1", data=files(data, names=["cat.jpg"]))
    assert resp.status_code == 200
    want = engine_probs([data])[0]  # Pillow decodes the same bytes to the same pixels
    top = resp.get_json()["predictions"][0]["top"][0]
    assert top["index"] == int(np.argmax(want))
    assert top["probability"] == pytest.approx(float(want.max()), rel=1e-5)


def test_the_example_digit_classifies_through_the_readme_path(lenet):
    resp = lenet.post("/v1/models/lenet/predict", data=files(SEVEN, names=["7.png"]))
    assert resp.status_code == 200
    probs = [t["probability"] for t in resp.get_json()["predictions"][0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_top_k_is_clamped_and_validated(lenet):
    resp = lenet.post("/v1/models/lenet/predict?top_k=50", data=files(SEVEN))
    assert len(resp.get_json()["predictions"][0]["top"]) == 10
    top = lenet.post("/v1/models/lenet/predict?top_k=1", data=files(SEVEN)).get_json()
    assert len(top["predictions"][0]["top"]) == 1
    assert_problem(lenet.post("/v1/models/lenet/predict?top_k=0", data=files(SEVEN)), 400, "top_k")
    assert_problem(
        lenet.post("/v1/models/lenet/predict?top_k=many", data=files(SEVEN)), 400, "top_k"
    )


def test_default_alias_then_newest(lenet):
    assert register(lenet, weights=lenet_weights(1)).status_code == 201
    assert lenet.post("/v1/models/lenet/predict", data=files(SEVEN)).get_json()["version"] == 2
    lenet.put("/v1/models/lenet/aliases/default", json={"version": 1})
    assert lenet.post("/v1/models/lenet/predict", data=files(SEVEN)).get_json()["version"] == 1
    via_ref = lenet.post("/v1/models/lenet/versions/latest/predict", data=files(SEVEN))
    assert via_ref.get_json()["version"] == 2
    want = engine_probs([SEVEN], seed=1)[0]
    top = via_ref.get_json()["predictions"][0]["top"][0]
    assert top["probability"] == pytest.approx(float(want.max()), rel=1e-5)


def test_the_version_document_shows_the_preprocessing(lenet):
    doc = lenet.get("/v1/models/lenet/versions/1").get_json()
    assert doc["preprocess"] == {
        "color": "L",
        "resize": [32, 32],
        "interpolation": "bilinear",
        "scale": pytest.approx(1 / 255),
        "mean": [0.5],
        "std": [0.5],
        "size": [32, 32],
        "layout": "CHW",
    }


def test_an_alias_move_is_seen_at_once_by_another_worker(make_app):
    first, second = make_app().test_client(), make_app().test_client()
    for seed in range(2):
        assert register(first, weights=lenet_weights(seed)).status_code == 201
    first.put("/v1/models/lenet/aliases/production", json={"version": 1})
    url = "/v1/models/lenet/versions/production/predict"
    assert [c.post(url, data=files(SEVEN)).get_json()["version"] for c in (first, second)] == [1, 1]
    first.put("/v1/models/lenet/aliases/production", json={"version": 2})
    assert [c.post(url, data=files(SEVEN)).get_json()["version"] for c in (first, second)] == [2, 2]


# -- errors ----------------------------------------------------------------------------


def test_unknown_model_version_and_alias(lenet):
    assert_problem(lenet.post("/v1/models/nope/predict", data=files(SEVEN)), 404, "nope")
    assert_problem(
        lenet.post("/v1/models/lenet/versions/9/predict", data=files(SEVEN)), 404, "no version 9"
    )
    assert_problem(
        lenet.post("/v1/models/lenet/versions/prod/predict", data=files(SEVEN)), 404, "'prod'"
    )


def test_bad_bodies(lenet):
    url = "/v1/models/lenet/predict"
    assert_problem(
        lenet.post(url, data={"picture": (io.BytesIO(SEVEN), "7.png")}),
        400,
        "multipart field 'image'",
        "'picture'",
    )
    assert_problem(lenet.post(url, data="hello", content_type="text/plain"), 415, "text/plain")
    assert_problem(lenet.post(url), 415, "no Content-Type")
    assert_problem(lenet.post(url, data="{", content_type="application/json"), 400, "instances")
    assert_problem(lenet.post(url, json={"inputs": []}), 400, "must be an object")
    assert_problem(lenet.post(url, json={"instances": []}), 422, "no instances")
    assert_problem(lenet.post(url, json={"instances": [[1, 2]]}), 422, "[1, 32, 32]")
    assert_problem(
        lenet.post(
            url,
            data=json.dumps({"instances": np.full((1, 32, 32), np.nan).tolist()}),
            content_type="application/json",
        ),
        422,
        "NaN",
    )


def test_image_errors_name_the_file(lenet):
    url = "/v1/models/lenet/predict"
    body = files(SEVEN, b"%PDF-1.4 not an image", names=["7.png", "scan.pdf"])
    assert_problem(lenet.post(url, data=body), 422, "scan.pdf is not an image")
    cut = digits(1)[0][:60]
    assert_problem(lenet.post(url, data=files(cut, names=["cut.png"])), 422, "cut.png")
    raw = lenet.post(url, data=b"\x89PNG broken", content_type="image/png")
    assert_problem(raw, 422, "the request body")


def test_too_many_pixels_and_too_many_images(make_app):
    client = make_app(max_image_pixels=1000, max_batch=3).test_client()
    assert register(client).status_code == 201
    url = "/v1/models/lenet/predict"
    big = png(Image.new("L", (40, 30)))
    assert_problem(client.post(url, data=files(big, names=["huge.png"])), 413, "huge.png", "1,000")
    assert_problem(client.post(url, data=files(*digits(4))), 413, "4 images", "at most 3")
    assert client.post(url, data=files(*digits(3))).status_code == 200


def test_preprocessing_that_misses_the_input_size_names_the_file(client):
    spec = load_model_spec("lenet")
    del spec["input"]["preprocess"]["resize"]
    assert register(client, spec=spec).status_code == 201
    small = png(Image.new("L", (28, 28)))
    resp = client.post("/v1/models/lenet/predict", data=files(small, names=["seven.png"]))
    assert_problem(resp, 422, "seven.png is 28×28", "takes 32×32", "add a resize")


def test_models_that_do_not_take_images_or_do_not_classify(client):
    spec = spec_of(
        [2, 4, 4], {"name": "g", "type": "global_avgpool"}, {"name": "f", "type": "flatten"}
    )
    resp = client.post("/v1/models/pairs/versions", data=upload(spec, _npz({})))
    assert resp.status_code == 201, resp.data
    assert_problem(client.post("/v1/models/pairs/predict", data=files(SEVEN)), 422, "not images")
    ok = client.post("/v1/models/pairs/predict", json={"instances": np.ones((1, 2, 4, 4)).tolist()})
    assert ok.status_code == 200 and len(ok.get_json()["predictions"][0]["top"]) == 2

    maps = spec_of([1, 4, 4], {"name": "r", "type": "relu"})
    assert client.post("/v1/models/maps/versions", data=upload(maps, _npz({}))).status_code == 201
    one = {"instances": np.ones((1, 4, 4)).tolist()}
    assert_problem(client.post("/v1/models/maps/predict", json=one), 422, "not a vector")


def _npz(arrays):
    from service.weights import dump_npz

    return dump_npz(arrays)


# -- activations ---------------------------------------------------------------------------


def test_activations_as_json_and_npy(lenet):
    url = "/v1/models/lenet/versions/1/activations?layer=conv1"
    resp = lenet.post(url, data=files(SEVEN))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["layer"] == "conv1" and body["shape"] == [3, 28, 28] and body["version"] == 1
    arch = Architecture.from_spec(load_model_spec("lenet"))
    x = ImagePipeline.from_description(arch.image_preprocess).batch([("7", SEVEN)])
    plan = compile_plan(arch, arch.check_weights(load_npz(lenet_weights())))
    _, want = plan.run(x, capture=["conv1"])
    np.testing.assert_allclose(np.array(body["data"], np.float32), want["conv1"][0], rtol=1e-5)

    npy = lenet.post(
        url, data=SEVEN, content_type="image/png", headers={"Accept": "application/x-npy"}
    )
    assert npy.mimetype == "application/x-npy"
    arr = np.load(io.BytesIO(npy.data), allow_pickle=False)
    np.testing.assert_array_equal(arr, np.array(body["data"], np.float32))

    pre = lenet.post("/v1/models/lenet/versions/1/activations?layer=image", data=files(SEVEN))
    np.testing.assert_allclose(np.array(pre.get_json()["data"]), x[0], rtol=1e-6)


def test_activation_errors(lenet):
    base = "/v1/models/lenet/versions/1/activations"
    assert_problem(lenet.post(base, data=files(SEVEN)), 400, "layer")
    assert_problem(lenet.post(f"{base}?layer=conv9", data=files(SEVEN)), 404, "conv9", "conv1")
    assert_problem(
        lenet.post(f"{base}?layer=conv1", data=files(SEVEN, SEVEN)), 422, "one input at a time"
    )


def test_predict_needs_no_admin_token(make_app):
    client = make_app(admin_token="s3cret").test_client()
    headers = {"Authorization": "Bearer s3cret"}
    resp = client.post(
        "/v1/models/lenet/versions",
        data=upload(load_model_spec("lenet"), lenet_weights()),
        headers=headers,
    )
    assert resp.status_code == 201
    assert client.post("/v1/models/lenet/predict", data=files(SEVEN)).status_code == 200


def test_openapi_documents_the_inference_bodies(client):
    doc = client.get("/openapi.json").get_json()
    body = doc["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*", "application/json"} <= set(body)
    assert "/v2/models/{name}/infer" in doc["paths"]


def test_softmax_is_applied_to_logits(client):
    spec = load_model_spec("lenet")
    spec["layers"] = spec["layers"][:-1]  # ends with fc2: logits
    assert register(client, spec=spec).status_code == 201
    body = client.post("/v1/models/lenet/predict?top_k=10", data=files(SEVEN)).get_json()
    probs = {t["index"]: t["probability"] for t in body["predictions"][0]["top"]}
    arch = Architecture.from_spec(spec)
    x = ImagePipeline.from_description(arch.image_preprocess).batch([("7", SEVEN)])
    logits = compile_plan(arch, arch.check_weights(load_npz(lenet_weights()))).run(x)
    want = softmax(logits, axis=1)[0]
    np.testing.assert_allclose([probs[i] for i in range(10)], want, rtol=1e-5)
    assert json.dumps(body)  # plain JSON numbers


def test_warm_up_compiles_named_models_when_the_app_starts(make_app):
    assert register(make_app().test_client()).status_code == 201
    app = make_app(warmup=("lenet:1", "ghost"))
    cache = app.extensions["convserve"].serving.cache
    assert cache.entries == 1  # lenet compiled; the missing model was logged, not fatal
    client = app.test_client()
    assert client.post("/v1/models/lenet/predict", data=files(SEVEN)).status_code == 200
    assert cache.entries == 1  # the request used the warmed plan
