"""The finishing touches flask-smorest cannot express per view, applied to the generated document.

- Errors are `application/problem+json` (as service.api.problems answers them), not the
  `application/json` flask-smorest declares; under `/v2` they are the protocol's
  `{"error": "..."}` as `application/json`.
- `/v2` operations return plain dicts or bytes, so their `200` answers are declared here.
- Path parameters say what the server accepts (model and alias names, version references), so a
  client or a fuzzer can tell a request the server must accept from one it may refuse.
"""

from __future__ import annotations

import copy
from typing import Any

PROBLEM_JSON = "application/problem+json"

NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}
ALIAS = {"type": "string", "pattern": "^[a-z][a-z0-9._-]{0,63}$"}
REF = {
    "type": "string",
    "pattern": "^([0-9]{1,10}|[a-z][a-z0-9._-]{0,63})$",
    "description": "a version number, an alias, or `latest`",
}
V2_VERSION = {"type": "string", "pattern": "^[0-9]{1,10}$"}
TAG_KEY = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"}
PATH_PARAMETERS = {"name": NAME, "alias": ALIAS, "ref": REF, "version": V2_VERSION, "key": TAG_KEY}

_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
V2_SCHEMAS: dict[str, dict[str, Any]] = {
    "V2Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "V2ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "V2Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "V2Ready": {
        "type": "object",
        "required": ["ready"],
        "properties": {"ready": {"type": "boolean"}},
    },
    "V2ModelReady": {
        "type": "object",
        "required": ["name", "version", "ready"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "ready": {"type": "boolean"},
        },
    },
    "V2ModelMetadata": {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _TENSOR},
            "outputs": {"type": "array", "items": _TENSOR},
        },
    },
    "V2InferResponse": {
        "type": "object",
        "required": ["model_name", "model_version", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"description": "the request's id, when it had one"},
            "outputs": {
                "type": "array",
                "items": {
                    **_TENSOR,
                    "properties": {
                        **_TENSOR["properties"],
                        "data": {"type": "array", "description": "values, row-major"},
                        "parameters": {"type": "object"},
                    },
                },
            },
        },
    },
    "V2ModelConfig": {"type": "object", "description": "Triton's model configuration JSON"},
    "V2Statistics": {
        "type": "object",
        "required": ["model_stats"],
        "properties": {"model_stats": {"type": "array", "items": {"type": "object"}}},
    },
    "V2RepositoryIndex": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "state"],
            "properties": {
                "name": {"type": "string"},
                "version": {
                    "type": "string",
                    "description": "the version an unversioned request runs (alias `default`, "
                    "else the newest); absent when the model has no version",
                },
                "state": {"type": "string", "enum": ["READY", "UNAVAILABLE"]},
                "reason": {
                    "type": "string",
                    "description": "why it is unavailable: `unloaded` or `no versions`",
                },
            },
        },
    },
    "V2Empty": {"type": "object", "maxProperties": 0, "description": "`{}`"},
}

#: The 200 answer of each /v2 operation, by (path suffix after /v2, method).
_V2_OK: dict[tuple[str, str], str] = {
    ("", "get"): "V2ServerMetadata",
    ("/health/live", "get"): "V2Live",
    ("/health/ready", "get"): "V2Ready",
    ("/models/{name}", "get"): "V2ModelMetadata",
    ("/models/{name}/versions/{version}", "get"): "V2ModelMetadata",
    ("/models/{name}/ready", "get"): "V2ModelReady",
    ("/models/{name}/versions/{version}/ready", "get"): "V2ModelReady",
    ("/models/{name}/infer", "post"): "V2InferResponse",
    ("/models/{name}/versions/{version}/infer", "post"): "V2InferResponse",
    ("/models/{name}/config", "get"): "V2ModelConfig",
    ("/models/{name}/versions/{version}/config", "get"): "V2ModelConfig",
    ("/models/stats", "get"): "V2Statistics",
    ("/models/{name}/stats", "get"): "V2Statistics",
    ("/models/{name}/versions/{version}/stats", "get"): "V2Statistics",
    ("/repository/index", "post"): "V2RepositoryIndex",
    ("/repository/models/{name}/load", "post"): "V2Empty",
    ("/repository/models/{name}/unload", "post"): "V2Empty",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def finish(doc: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the corrections above (a copy; the input is not changed)."""
    doc = copy.deepcopy(doc)
    components = doc.setdefault("components", {})
    for response in components.get("responses", {}).values():
        content = response.get("content", {})
        if "application/json" in content:  # every shared response component is an error
            content[PROBLEM_JSON] = content.pop("application/json")
    schemas = components.setdefault("schemas", {})
    schemas.update(copy.deepcopy(V2_SCHEMAS))
    if "RegisterForm" in schemas:  # spec and weights, or onnx: one of the two forms
        schemas["RegisterForm"]["anyOf"] = [
            {"required": ["spec", "weights"]},
            {"required": ["onnx"]},
        ]
    components["responses"]["V2_ERROR"] = {
        "description": "the protocol's error body",
        "content": {"application/json": {"schema": _ref("V2Error")}},
    }
    for path, item in doc.get("paths", {}).items():
        for param in item.get("parameters", []):
            if param.get("in") == "path" and param.get("name") in PATH_PARAMETERS:
                param["schema"] = dict(PATH_PARAMETERS[param["name"]])
        if not (path == "/v2" or path.startswith("/v2/")):
            continue
        for method, operation in item.items():
            if method == "parameters" or not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            for status, response in list(responses.items()):
                if status != "200" and "$ref" in response:
                    responses[status] = {"$ref": "#/components/responses/V2_ERROR"}
            ok = _V2_OK.get((path.removeprefix("/v2"), method))
            if ok is not None:
                content: dict[str, Any] = {"application/json": {"schema": _ref(ok)}}
                if ok == "V2InferResponse":
                    content["application/octet-stream"] = {
                        "schema": {"type": "string", "format": "binary"}
                    }
                responses["200"] = {"description": "OK", "content": content}
    return doc
