"""The official tritonclient and curl against a live `make serve` (gunicorn, 2 workers)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
import requests

from service.architecture import Architecture
from service.engine import compile_plan
from service.weights import load_npz
from tests.helpers import ROOT, lenet_weights, load_model_spec
from tests.helpers.live import live_server

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is a dev extra")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("triton")
    with live_server(f"sqlite:///{tmp / 'registry.db'}", tmp) as (base, log):
        spec = (ROOT / "models" / "lenet.json").read_bytes()
        files = {"spec": ("lenet.json", spec), "weights": ("w.npz", lenet_weights())}
        resp = requests.post(f"{base}/v1/models/lenet/versions", files=files, timeout=30)
        assert resp.status_code == 201, resp.text
        yield base, log


@pytest.fixture
def client(server):
    base, _ = server
    c = httpclient.InferenceServerClient(base.removeprefix("http://"))
    yield c
    c.close()


def expected(x: np.ndarray) -> np.ndarray:
    arch = Architecture.from_spec(load_model_spec("lenet"))
    return compile_plan(arch, arch.check_weights(load_npz(lenet_weights()))).run(x)


def lenet_input(x: np.ndarray, binary: bool = True):
    inp = httpclient.InferInput("image", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    return inp


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("lenet") and client.is_model_ready("lenet", "1")
    assert not client.is_model_ready("ghost")
    assert client.get_server_metadata()["name"] == "convserve"
    meta = client.get_model_metadata("lenet")
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 32, 32]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get_model_metadata("lenet", "1")["versions"] == ["1"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_binary_and_json(client, binary):
    x = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    outputs = [httpclient.InferRequestedOutput("output", binary_data=binary)]
    result = client.infer("lenet", [lenet_input(x, binary)], outputs=outputs, request_id="r1")
    np.testing.assert_allclose(result.as_numpy("output"), expected(x), rtol=1e-5)
    response = result.get_response()
    assert response["model_version"] == "1" and response["id"] == "r1"


def test_infer_with_the_clients_defaults_and_compression(client):
    x = np.random.default_rng(1).standard_normal((1, 1, 32, 32)).astype(np.float32)
    for algorithm in (None, "gzip", "deflate"):
        result = client.infer(
            "lenet", [lenet_input(x)], model_version="1", request_compression_algorithm=algorithm
        )
        np.testing.assert_allclose(result.as_numpy("output"), expected(x), rtol=1e-5)


def test_classification(client):
    x = np.random.default_rng(2).standard_normal((2, 1, 32, 32)).astype(np.float32)
    outputs = [httpclient.InferRequestedOutput("output", class_count=3)]
    got = client.infer("lenet", [lenet_input(x)], outputs=outputs).as_numpy("output")
    assert got.shape == (2, 3)
    want = np.argsort(-expected(x), axis=1, kind="stable")[:, :3]
    assert [[int(s.decode().split(":")[1]) for s in row] for row in got] == want.tolist()


def test_config_statistics_and_repository_through_the_client(client):
    cfg = client.get_model_config("lenet")
    assert cfg["name"] == "lenet" and cfg["max_batch_size"] >= 1
    assert cfg["input"][0]["dims"] == [1, 32, 32]
    before = client.get_inference_statistics("lenet", "1")["model_stats"][0]
    x = np.random.default_rng(3).standard_normal((3, 1, 32, 32)).astype(np.float32)
    client.infer("lenet", [lenet_input(x)])
    after = client.get_inference_statistics("lenet", "1")["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 3
    assert after["execution_count"] - before["execution_count"] == 1
    queue = after["inference_stats"]["queue"]
    assert queue["count"] - before["inference_stats"]["queue"]["count"] == 1
    assert any(m["name"] == "lenet" for m in client.get_model_repository_index())
    # Every worker follows a load or unload within a second (each re-reads the state then).
    client.unload_model("lenet")
    assert _eventually(lambda: not client.is_model_ready("lenet"))
    client.load_model("lenet")
    assert _eventually(lambda: client.is_model_ready("lenet"))


def _eventually(check, seconds: float = 8.0, hold: float = 1.5) -> bool:
    """`check()` holds without a break for `hold` seconds (longer than the 1 s every worker may
    take to re-read the state, so later tests meet no stale worker) within `seconds`."""
    end, since = time.monotonic() + seconds, None
    while time.monotonic() < end:
        now = time.monotonic()
        since = (since or now) if check() else None
        if since is not None and now - since >= hold:
            return True
        time.sleep(0.05)
    return False


def test_errors_reach_the_client_as_messages(client):
    x = np.zeros((1, 1, 28, 28), np.float32)
    with pytest.raises(InferenceServerException, match=r"takes \[N, 1, 32, 32\]") as info:
        client.infer("lenet", [lenet_input(x)])
    assert info.value.status() == "400"
    with pytest.raises(InferenceServerException, match="no model named 'ghost'"):
        client.infer("ghost", [lenet_input(x)])
    with pytest.raises(InferenceServerException, match="unexpected inference input 'pixels'"):
        inp = httpclient.InferInput("pixels", [1, 1, 32, 32], "FP32")
        inp.set_data_from_numpy(np.zeros((1, 1, 32, 32), np.float32))
        client.infer("lenet", [inp])


def readme_block(language: str, marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    for block in re.findall(rf"```{language}\n(.*?)```", text, re.S):
        if marker in block:
            return block
    raise AssertionError(f"README has no {language} block with {marker!r}")


def test_the_readme_tritonclient_snippet_runs(server):
    base, _ = server
    code = readme_block("python", "tritonclient").replace("localhost:8000", base[7:])
    assert len([line for line in code.splitlines() if line.strip()]) <= 6
    env: dict = {}
    exec(compile(code, "README.md", "exec"), env)  # noqa: S102 - our own README
    assert env["result"].as_numpy("output").shape == (1, 10)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_curl_predictions_run(server):
    """Every one-line `curl -F image=@models/examples/…` of the README, as a user types it."""
    base, _ = server
    text = (ROOT / "README.md").read_text()
    pattern = r"^curl -F image=@models/examples/\S+ localhost:8000\S+$"
    lines = sorted(set(re.findall(pattern, text, re.M)))
    assert any("/digits/predict" in line for line in lines), lines
    for line in lines:
        out = subprocess.run(
            line.replace("localhost:8000", base[7:]).split(),
            cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        body = json.loads(out.stdout)
        top = body["predictions"][0]["top"]
        assert len(top) == 5, body
        if body["model"] == "digits":  # `make serve` seeded the trained demo model
            digit = re.search(r"examples/(\d)", line).group(1)
            assert body["version"] == 1 and top[0]["label"] == digit, body


def test_predictions_across_both_workers_agree(server):
    base, _ = server
    image = (ROOT / "models" / "examples" / "7.png").read_bytes()
    answers = {
        requests.post(
            f"{base}/v1/models/lenet/predict", files={"image": ("7.png", image)}, timeout=10
        ).text
        for _ in range(8)
    }
    assert len(answers) == 1
