"""/openapi.json says what the server does: error media types, /v2 answers, path parameters."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from tests.helpers import ROOT


def test_errors_are_declared_as_problem_json_and_v2_as_its_error_body(client):
    doc = client.get("/openapi.json").get_json()
    validate(doc)
    responses = doc["components"]["responses"]
    assert set(responses["DEFAULT_ERROR"]["content"]) == {"application/problem+json"}
    assert set(responses["BAD_REQUEST"]["content"]) == {"application/problem+json"}
    assert responses["V2_ERROR"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/V2Error"
    }
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            default = op["responses"]["default"]["$ref"]
            want = "V2_ERROR" if path.startswith("/v2") else "DEFAULT_ERROR"
            assert default.endswith(want), (path, method, default)


def test_every_v2_operation_declares_its_answer(client):
    """Each /v2 operation documents its 200, or is one the server answers 501 (not offered)."""
    doc = client.get("/openapi.json").get_json()
    for path, item in doc["paths"].items():
        if not path.startswith("/v2"):
            continue
        for method, op in item.items():
            if method == "parameters":
                continue
            if "200" in op["responses"]:
                content = op["responses"]["200"].get("content", {})
                for body in content.values():
                    assert body["schema"], (path, method)
                continue
            url = path.replace("{name}", "x").replace("{version}", "1").replace("{rest}", "x")
            assert getattr(client, method)(url).status_code == 501, (path, method)
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]["responses"]["200"]["content"]
    assert set(infer) == {"application/json", "application/octet-stream"}
    meta = doc["paths"]["/v2/models/{name}"]["get"]["responses"]["200"]["content"]
    assert meta["application/json"]["schema"] == {"$ref": "#/components/schemas/V2ModelMetadata"}


def test_path_parameters_say_what_is_accepted(client):
    doc = client.get("/openapi.json").get_json()
    params = {
        p["name"]: p["schema"]
        for item in doc["paths"].values()
        for p in item.get("parameters", [])
        if p["in"] == "path"
    }
    assert params["name"]["pattern"] == "^[a-z0-9][a-z0-9._-]{0,63}$"
    assert params["alias"]["pattern"].startswith("^[a-z]")
    assert "[0-9]{1,10}" in params["ref"]["pattern"]


def test_limit_takes_one_value(client):
    limit = next(
        p
        for p in client.get("/openapi.json").get_json()["paths"]["/v1/models"]["get"]["parameters"]
        if p["name"] == "limit"
    )
    assert limit["schema"]["type"] == "integer"
    assert client.get("/v1/models?limit=1&limit=2").status_code == 400


def _documented(text: str) -> set[tuple[str, str]]:
    """(method, path) pairs docs/api.md names, `[/optional]` parts both with and without."""
    found = set()
    for method, path in re.findall(r"\b(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)", text):
        for expanded in {re.sub(r"\[([^]]*)\]", r"\1", path), re.sub(r"\[[^]]*\]", "", path)}:
            found.add((method, expanded))
    return found


def test_docs_api_md_documents_every_operation_with_its_role(client):
    """docs/api.md names every operation of /openapi.json (the 501s of what is not offered are
    listed by path), and its summary table gives each the role the server checks."""
    doc = client.get("/openapi.json").get_json()
    text = (ROOT / "docs" / "api.md").read_text()
    documented = _documented(text)
    glance = text.split("## Endpoints at a glance")[1].split("\n## ")[0]
    rows = {}
    for line in glance.splitlines():
        cells = line.split(" | ")
        if line.startswith("| `") and len(cells) >= 2:
            for pair in _documented(cells[0]):
                rows[pair] = cells[1]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            if "summary" not in op:  # a Triton endpoint answered 501
                assert path.split("{")[0].rstrip("/") in text, path
                continue
            pair = (method.upper(), path)
            assert pair in documented, pair
            role = op.get("x-convserve-role") or ("read" if method == "get" else "write")
            if path in ("/healthz", "/readyz", "/metrics") or path.startswith("/v2/health"):
                role = "open"
            assert rows.get(pair) == role, (pair, rows.get(pair), role)
