"""The Open Inference Protocol (KServe V2, as Triton speaks it) over HTTP/REST.

`tritonclient.http` works unchanged: health, server and model metadata, model readiness, and
`infer` with JSON `data` or the binary tensor extension (the client's default: a JSON header of
`Inference-Header-Content-Length` bytes, then raw little-endian tensors), binary outputs, the
classification extension and gzip/deflate request bodies. Errors are `{"error": "..."}`.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
from flask import Response, current_app, request

from service import __version__, metrics
from service.errors import InvalidInput, Malformed
from service.registry.records import StoredModel
from service.serving.dataplane import DataPlane, LoadedModel, best_first

from . import bodies
from .health import check_ready
from .parsing import ApiBlueprint
from .problems import register_renderer
from .security import public, requires

blp = ApiBlueprint(
    "v2",
    __name__,
    url_prefix="/v2",
    description="Open Inference Protocol (KServe V2 / Triton HTTP), for tritonclient and KServe.",
)

HEADER_LENGTH = bodies.HEADER_LENGTH
OUTPUT = "output"
EXTENSIONS = [
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "statistics",
    "model_repository",
]


def _error(
    status: int,
    title: str,
    detail: str,
    slug: str | None,
    errors: list[dict[str, Any]] | None,
    headers: dict[str, str] | None,
) -> Response:
    """The protocol's error body: {"error": detail} (the detail already names what is wrong)."""
    # The protocol reports a request the server cannot use as 400, whatever the reason.
    status = 400 if status in (415, 422) else status
    resp = Response(json.dumps({"error": detail}), status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


register_renderer(blp.url_prefix, _error)


def data_plane() -> DataPlane:
    return current_app.extensions["convserve"].serving


# -- health and metadata -----------------------------------------------------------------


@blp.route("/health/live", methods=["GET"])
@public
def live() -> dict[str, Any]:
    """200 while the server lives."""
    return {"live": True}


@blp.route("/health/ready", methods=["GET"])
@public
def ready() -> dict[str, Any]:
    """200 once the registry database is ready, else 503."""
    check_ready()
    return {"ready": True}


@blp.route("", methods=["GET"])
def server_metadata() -> dict[str, Any]:
    """Server name, version and protocol extensions."""
    return {"name": "convserve", "version": __version__, "extensions": EXTENSIONS}


@blp.route("/models/<name>", methods=["GET"])
@blp.route("/models/<name>/versions/<version>", methods=["GET"])
def model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
    """Inputs and outputs of a model (the version alias `default` names, else the newest)."""
    dp = data_plane()
    model = dp.model(name, version)
    numbers = [model.number] if version else dp.registry.version_numbers(name)
    arch = model.arch
    return {
        "name": model.name,
        "versions": [str(n) for n in numbers],
        "platform": "convserve_numpy",
        "inputs": [{"name": arch.input_name, "datatype": "FP32", "shape": [-1, *arch.input_shape]}],
        "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, *arch.output_shape]}],
    }


@blp.route("/models/<name>/ready", methods=["GET"])
@blp.route("/models/<name>/versions/<version>/ready", methods=["GET"])
def model_ready(name: str, version: str | None = None) -> dict[str, Any]:
    """200 once the version is compiled into this worker's cache (it is loaded on the way)."""
    model = data_plane().model(name, version)
    return {"name": model.name, "version": str(model.number), "ready": True}


# -- infer -------------------------------------------------------------------------------


@blp.route("/models/<name>/infer", methods=["POST"])
@blp.route("/models/<name>/versions/<version>/infer", methods=["POST"])
@requires("predict")
@blp.doc(
    requestBody={
        "required": True,
        "description": "the inference request JSON; with the binary tensor extension followed "
        "by raw tensors, the JSON's length in the Inference-Header-Content-Length header",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
)
def infer(name: str, version: str | None = None) -> Response:
    """Run one batch `[N, *input.shape]` of FP32; the output `output` is the last layer's values."""
    dp = data_plane()
    # The version the request names, resolved before the body is read: it bounds the values the
    # body may hold, so a body of more is refused while inflating. The same version runs it.
    resolved = dp.model(name, version)
    raw = _read_body(dp, resolved)
    parsed: list[bodies.InferRequest] = []

    def decode(model: LoadedModel) -> np.ndarray:
        # Parsed once the model is known: it bounds how many values the body may hold, and a
        # data array is checked against its declared shape before any value is read.
        req = _parse(dp, model, raw)
        parsed.append(req)
        x = _input(dp, model, req.doc, req.binary)
        _requested_outputs(model, req.doc)  # a bad output request fails before the model runs
        return x

    encode = lambda m, y: _response(dp, m, parsed[-1].doc, y)  # noqa: E731
    _, resp = dp.infer(name, version, decode, encode, model=resolved)
    return resp


def _response(dp: DataPlane, model: LoadedModel, doc: dict[str, Any], y: np.ndarray) -> Response:
    """The inference response: JSON, or a JSON header and binary tensors."""
    entries, chunks = [], []
    for out_name, as_binary, classes in _requested_outputs(model, doc):
        if classes:
            arr = _classification(dp, model, y, classes)
            entry = {"name": out_name, "datatype": "BYTES", "shape": list(arr.shape)}
        else:
            arr = y
            entry = {"name": out_name, "datatype": "FP32", "shape": list(y.shape)}
        if as_binary:
            raw = _bytes_tensor(arr) if classes else arr.astype("<f4").tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = arr.ravel().tolist()
        entries.append(entry)
    body: dict[str, Any] = {"model_name": model.name, "model_version": str(model.number)}
    if "id" in doc:
        body["id"] = doc["id"]
    body["outputs"] = entries
    header = json.dumps(body).encode()
    if not chunks:
        return Response(header, mimetype="application/json")
    resp = Response(header + b"".join(chunks), mimetype="application/octet-stream")
    resp.headers[HEADER_LENGTH] = str(len(header))
    return resp


def _read_body(dp: DataPlane, model: LoadedModel) -> bytes | bytearray:
    """The body, inflated (gzip, deflate) in a stream that stops at the upload limit (413), or
    as soon as its JSON holds more values than the model can take in one request."""
    limit = current_app.extensions["convserve"].settings.max_upload_bytes
    return bodies.read_infer_body(request, limit, *_value_bound(dp, model))


def _value_bound(dp: DataPlane, model: LoadedModel) -> tuple[int, str]:
    """The most values one request to `model` can carry, and the words that say why."""
    per_input = int(np.prod(model.arch.input_shape))
    why = (
        f"and model {model.name!r} takes at most {dp.max_batch} inputs of {per_input:,} values "
        f"per request (CONVSERVE_MAX_BATCH)"
    )
    return dp.max_batch * per_input, why


def _parse(dp: DataPlane, model: LoadedModel, raw: bytes | bytearray) -> bodies.InferRequest:
    """The JSON header (data arrays still as text) and the binary tensors after it. The client
    sends no Content-Type."""
    length = request.headers.get(HEADER_LENGTH)
    return bodies.infer_request(raw, length, *_value_bound(dp, model))


def _input(
    dp: DataPlane, model: LoadedModel, doc: dict[str, Any], binary: memoryview
) -> np.ndarray:
    arch = model.arch
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInput(
            f'the request must have "inputs": a list of one tensor, {arch.input_name!r}, as '
            f"model {model.name!r} has one input"
        )
    inp = inputs[0]
    name = inp.get("name")
    if name != arch.input_name:
        raise InvalidInput(
            f"unexpected inference input {name!r} for model {model.name!r}: its input is "
            f"{arch.input_name!r}"
        )
    if inp.get("datatype") != "FP32":
        raise InvalidInput(
            f"input {name!r} has datatype {inp.get('datatype')!r}; the model takes FP32"
        )
    shape = inp.get("shape")
    want = list(arch.input_shape)
    if (
        not isinstance(shape, list)
        or len(shape) != len(want) + 1
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[1:] != want
        or shape[0] < 0
    ):
        raise InvalidInput(f"input {name!r} has shape {shape}; the model takes [N, {_dims(want)}]")
    dp.check_count(shape[0], "inputs")
    count = int(np.prod(shape))
    params = _parameters(inp, f"input {name!r}")
    if "shared_memory_region" in params:
        raise InvalidInput("shared-memory tensors are not supported; send the data in the request")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or size != len(binary) or size != count * 4:
            raise InvalidInput(
                f"input {name!r} of shape {shape} needs {count * 4} bytes of FP32, but "
                f"binary_data_size is {size!r} and {len(binary)} bytes follow the JSON"
            )
        x = np.frombuffer(binary, dtype="<f4").reshape(shape).astype(np.float32)
    elif "data" in inp:
        if binary:
            raise Malformed(f"{len(binary)} bytes follow the JSON but no input declares them")
        x = bodies.tensor(inp["data"], shape, f"input {name!r}")
    else:
        raise InvalidInput(f"input {name!r} has neither data nor parameters.binary_data_size")
    return dp.finite(x)


def _requested_outputs(model: LoadedModel, doc: dict[str, Any]) -> list[tuple[str, bool, int]]:
    """(name, binary?, classification count) per output asked for; all outputs if none is."""
    params = _parameters(doc, "the request")
    binary_default = bool(params.get("binary_data_output", False))
    requested = doc.get("outputs")
    if requested is None:
        return [(OUTPUT, binary_default, 0)]
    if not isinstance(requested, list):
        raise InvalidInput('"outputs" must be a list')
    out = []
    for item in requested:
        name = item.get("name") if isinstance(item, dict) else None
        if name != OUTPUT:
            raise InvalidInput(
                f"unexpected inference output {name!r} for model {model.name!r}: its output is "
                f"{OUTPUT!r}"
            )
        p = _parameters(item, f"output {name!r}")
        classes = p.get("classification", 0)
        if not isinstance(classes, int) or classes < 0:
            raise InvalidInput(f"classification must be a class count, not {classes!r}")
        out.append((name, bool(p.get("binary_data", binary_default)), classes))
    return out


def _parameters(obj: dict[str, Any], what: str) -> dict[str, Any]:
    """An object's `parameters`: a JSON object, or none."""
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput(f'{what}: "parameters" must be an object, not {type(params).__name__}')
    return params


def _classification(dp: DataPlane, model: LoadedModel, y: np.ndarray, count: int) -> np.ndarray:
    """Triton's classification extension: "value:index[:label]" strings, best first."""
    k = dp.check_classifier(model)
    scores = y.reshape(len(y), k)
    order = best_first(scores, count)
    labels = model.arch.labels
    rows = [
        [f"{s[i]:f}:{i}" + (f":{labels[i]}" if labels else "") for i in row]
        for row, s in zip(order, scores, strict=True)
    ]
    return np.array(rows, dtype=object)


def _bytes_tensor(arr: np.ndarray) -> bytes:
    """BYTES elements, each as a 4-byte little-endian length and its UTF-8 bytes."""
    parts = []
    for s in arr.ravel():
        b = s.encode()
        parts.append(struct.pack("<I", len(b)) + b)
    return b"".join(parts)


def _dims(dims: list[int]) -> str:
    return ", ".join(map(str, dims))


# -- model configuration and statistics (Triton's extensions) ----------------------------


@blp.route("/models/<name>/config", methods=["GET"])
@blp.route("/models/<name>/versions/<version>/config", methods=["GET"])
def model_config(name: str, version: str | None = None) -> dict[str, Any]:
    """The model's configuration in Triton's JSON form (`tritonclient`'s `get_model_config`)."""
    dp = data_plane()
    model = dp.model(name, version, check_state=False)
    cfg = dp.config(model.name)
    arch = model.arch
    db = cfg.dynamic_batching
    return {
        "name": model.name,
        "platform": "convserve_numpy",
        "backend": "convserve",
        "max_batch_size": cfg.max_batch_size,
        "input": [
            {"name": arch.input_name, "data_type": "TYPE_FP32", "dims": list(arch.input_shape)}
        ],
        "output": [{"name": OUTPUT, "data_type": "TYPE_FP32", "dims": list(arch.output_shape)}],
        "dynamic_batching": {
            "preferred_batch_size": list(db.preferred_batch_size),
            "max_queue_delay_microseconds": db.max_queue_delay_microseconds,
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": db.default_timeout_microseconds,
                "max_queue_size": db.max_queue_size,
            },
        },
        "instance_group": [{"name": model.name, "kind": "KIND_CPU", "count": 1}],
    }


@blp.route("/models/stats", methods=["GET"])
@blp.route("/models/<name>/stats", methods=["GET"])
@blp.route("/models/<name>/versions/<version>/stats", methods=["GET"])
def model_statistics(name: str | None = None, version: str | None = None) -> dict[str, Any]:
    """Triton's statistics extension, summed over every worker: per model version, requests and
    the time in each phase (queue, compute_input, compute_infer, compute_output)."""
    dp = data_plane()
    stats = metrics.inference_statistics()
    if name is None:
        keys = sorted(stats)
    elif version is not None:
        keys = [(name, str(dp.registry.resolve(name, version).number))]
    else:
        keys = [(name, str(n)) for n in dp.registry.version_numbers(name)]
    empty = {"count": 0, "ns": 0}
    rows = []
    for model, number in keys:
        s = stats.get((model, number), {})
        rows.append(
            {
                "name": model,
                "version": number,
                "last_inference": s.get("last_inference", 0),
                "inference_count": s.get("inference_count", 0),
                "execution_count": s.get("execution_count", 0),
                "inference_stats": {
                    **{p: s.get(p, empty) for p in metrics.PHASES},
                    "cache_hit": empty,
                    "cache_miss": empty,
                },
                "batch_stats": [],
            }
        )
    return {"model_stats": rows}


# -- repository (Triton's model repository extension) ------------------------------------


@blp.route("/repository/index", methods=["POST"])
@requires("read")
def repository_index() -> Response:
    """Every registered model as Triton's index lists it: name, version (the one an unversioned
    request runs: alias `default`, else the newest), state READY (loaded, or loaded on demand) or
    UNAVAILABLE (unloaded, or no version left), and the reason when unavailable. Body
    `{"ready": true}` lists only the ready ones."""
    dp = data_plane()
    body = request.get_json(silent=True) if request.content_length else None
    ready_only = bool(body.get("ready")) if isinstance(body, dict) else False
    states = dp.registry.model_states()
    out, cursor = [], None
    while True:
        page = dp.registry.list_models(limit=500, cursor=cursor)
        for m in page.items:
            out.extend(_index_entry(m, states.get(m.name), ready_only))
        cursor = page.next_cursor
        if not cursor:
            break
    return Response(json.dumps(out), mimetype="application/json")


def _index_entry(model: StoredModel, state: str | None, ready_only: bool) -> list[dict]:
    """The model's entry in the repository index (none when only ready ones are asked for)."""
    number = model.default_version
    entry: dict[str, Any] = {"name": model.name}
    if number is not None:
        entry["version"] = str(number)
    reason = "unloaded" if state == "unloaded" else None if number is not None else "no versions"
    entry["state"] = "READY" if reason is None else "UNAVAILABLE"
    if reason is not None:
        if ready_only:
            return []
        entry["reason"] = reason
    return [entry]


def _empty() -> Response:
    """What load and unload answer: 200 and an empty JSON object (tritonclient reads no body)."""
    return Response("{}", status=200, mimetype="application/json")


@blp.route("/repository/models/<name>/load", methods=["POST"])
@requires("admin")
def repository_load(name: str) -> Response:
    """Compile the model (its default version) and keep it in every worker's cache."""
    data_plane().load(name)
    return _empty()


@blp.route("/repository/models/<name>/unload", methods=["POST"])
@requires("admin")
def repository_unload(name: str) -> Response:
    """Drop the model from every worker's cache; requests to it answer 503 until it is loaded."""
    dp = data_plane()
    dp.registry.resolve(name, None)  # 404 for a model that does not exist
    dp.unload(name)
    return _empty()


#: Triton endpoints convserve does not offer: 501, not 404, so a client can tell "not here" from
#: "no such model".
NOT_OFFERED = {
    "/systemsharedmemory/<path:rest>": "system shared memory",
    "/cudasharedmemory/<path:rest>": "CUDA shared memory",
    "/trace/setting": "trace settings",
    "/models/<name>/trace/setting": "trace settings",
    "/logging": "log settings",
    "/models/<name>/generate": "the generate extension",
    "/models/<name>/generate_stream": "the generate extension",
    "/models/<name>/versions/<version>/generate": "the generate extension",
    "/models/<name>/versions/<version>/generate_stream": "the generate extension",
}


def _not_offered(what: str) -> Any:
    @public  # answers 501 to everyone: nothing to guard
    def view(**_: Any) -> Response:
        body = {"error": f"convserve does not offer {what} (Triton extension not implemented)"}
        return Response(json.dumps(body), status=501, mimetype="application/json")

    return view


for _rule, _what in NOT_OFFERED.items():
    blp.add_url_rule(
        _rule,
        endpoint="not_offered_" + _rule.replace("/", "_").replace("<", "").replace(">", ""),
        view_func=_not_offered(_what),
        methods=["GET", "POST"],
    )
