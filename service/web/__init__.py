"""The web interface at `/`: server-rendered pages over the registry, with small ES modules that
draw the network, its kernels and feature maps from the /v1 API. Every asset is served by this
app (Swagger UI's too), so the pages work offline."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from flask import (
    Blueprint,
    Flask,
    current_app,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from markupsafe import Markup

from service.api.documents import model_document, version_document
from service.architecture import Architecture
from service.errors import ConvserveError, NotFound
from service.registry.store import Registry

STATIC = Path(__file__).parent / "static"


@functools.cache
def fingerprints() -> dict[str, str]:
    """Each static file's content hash: URLs carry it, so browsers may cache them for good."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in sorted(STATIC.iterdir())
        if p.is_file()
    }


class WebBlueprint(Blueprint):
    def get_send_file_max_age(self, filename: str | None) -> int | None:
        # A fingerprinted URL never changes content; a bare one is revalidated (ETag) each time.
        return 365 * 86400 if request.args.get("v") else None


blp = WebBlueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)

#: Specs the editor offers besides the registered models' (the contract's LeNet-5 example).
EXAMPLES: dict[str, Any] = {
    "lenet (example)": {
        "input": {
            "name": "image",
            "shape": [1, 32, 32],
            "preprocess": {
                "color": "L",
                "resize": [32, 32],
                "scale": 1 / 255,
                "mean": [0.5],
                "std": [0.5],
            },
        },
        "labels": [str(i) for i in range(10)],
        "layers": [
            {
                "name": "conv1",
                "type": "conv2d",
                "in_channels": 1,
                "out_channels": 3,
                "kernel_size": 5,
            },
            {"name": "relu1", "type": "relu"},
            {"name": "pool1", "type": "maxpool2d", "kernel_size": 2},
            {
                "name": "conv2",
                "type": "conv2d",
                "in_channels": 3,
                "out_channels": 6,
                "kernel_size": 5,
            },
            {"name": "relu2", "type": "relu"},
            {"name": "pool2", "type": "maxpool2d", "kernel_size": 2},
            {"name": "flatten", "type": "flatten"},
            {"name": "fc1", "type": "linear", "in_features": 150, "out_features": 100},
            {"name": "relu3", "type": "relu"},
            {"name": "fc2", "type": "linear", "in_features": 100, "out_features": 10},
            {"name": "prob", "type": "softmax"},
        ],
    }
}

#: Where /docs loads Swagger UI's assets from (this app; see init_app).
SWAGGER_ASSETS = "/docs/assets/"


def registry() -> Registry:
    return current_app.extensions["convserve"].registry


def has_route(rule: str) -> bool:
    return any(r.rule == rule for r in current_app.url_map.iter_rules())


def as_json(value: Any) -> Markup:
    """JSON safe to embed in <script type="application/json"> (no `</` can close the tag)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def not_found(err: ConvserveError) -> tuple[str, int]:
    return render_template("error.html", title="Not found", message=str(err)), 404


@blp.app_template_filter("shape")
def shape_filter(shape: list[int]) -> str:
    return "×".join(map(str, shape))


@blp.app_template_filter("count")
def count_filter(n: int | None) -> str:
    """1234567 → 1.23 M: short counts for params and MACs."""
    if n is None:
        return "–"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return str(n)


@blp.app_template_filter("bytes")
def bytes_filter(n: int | None) -> str:
    if n is None:
        return "–"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


@blp.route("/")
def index() -> str:
    page = registry().list_models(200)
    models = []
    for summary in page.items:
        try:
            models.append(model_document(registry().model(summary.name)))
        except NotFound:  # deleted between the two reads
            continue
    return render_template("index.html", models=models, more=page.next_cursor is not None)


@blp.route("/models/<name>")
def model_page(name: str) -> Any:
    try:
        model = model_document(registry().model(name))
    except NotFound as err:
        return not_found(err)
    history = has_route("/v1/models/<name>/history")
    diff = has_route("/v1/models/<name>/diff")
    return render_template("model.html", model=model, history=history, diff=diff)


def _version(name: str, ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    version = registry().version(name, ref)
    return version_document(version), Architecture.from_spec(version.spec).table()


@blp.route("/models/<name>/versions/<ref>")
def version_page(name: str, ref: str) -> Any:
    try:
        version, table = _version(name, ref)
    except NotFound as err:
        return not_found(err)
    return render_template("version.html", v=version, table=table, as_json=as_json)


@blp.route("/models/<name>/versions/<ref>/kernels")
def kernels_page(name: str, ref: str) -> Any:
    try:
        version, table = _version(name, ref)
    except NotFound as err:
        return not_found(err)
    return render_template("kernels.html", v=version, table=table, as_json=as_json)


@blp.route("/models/<name>/versions/<ref>/classify")
def classify_page(name: str, ref: str) -> Any:
    try:
        version, table = _version(name, ref)
    except NotFound as err:
        return not_found(err)
    return render_template("classify.html", v=version, table=table, as_json=as_json)


@blp.route("/editor")
def editor_page() -> str:
    registered = [m.name for m in registry().list_models(200).items]
    return render_template(
        "editor.html",
        examples=[*EXAMPLES, *registered],
        example_specs=EXAMPLES,
        as_json=as_json,
    )


@blp.route("/register")
def register_page() -> str:
    tokens = current_app.extensions["convserve"].tokens
    return render_template("register.html", token_needed=tokens.configured)


#: Pages that show nothing from the registry, so they stay open when reads need a token.
OPEN_PAGES = {"web.static", "web.swagger_assets", "web.register_page"}


@blp.before_request
def reads_need_token() -> Any:
    """With CONVSERVE_READS_NEED_TOKEN, pages rendered from the registry would show it to anyone
    (a browser cannot send a bearer token when it navigates): they are refused, the API is not."""
    settings = current_app.extensions["convserve"].settings
    if settings.reads_need_token and request.endpoint not in OPEN_PAGES:
        message = (
            "This server requires a token for every read (CONVSERVE_READS_NEED_TOKEN), so its "
            "web pages, which show the registry to whoever opens them, are turned off. The API "
            "answers with 'Authorization: Bearer <token>'."
        )
        return render_template("error.html", title="Token required", message=message), 401
    return None


@blp.route(SWAGGER_ASSETS + "<path:filename>")
def swagger_assets(filename: str) -> Any:
    """Swagger UI's files from the pinned swagger-ui-bundle package, for /docs."""
    resp = send_from_directory(swagger_ui_bundle.swagger_ui_path, filename, max_age=86400)
    return resp


def init_app(app: Flask) -> None:
    """Serve the pages (create_app points /docs at SWAGGER_ASSETS before the API is built)."""
    app.register_blueprint(blp)
    app.jinja_env.globals.update(static=static_url, import_map=import_map)


def static_url(filename: str) -> str:
    return url_for("web.static", filename=filename, v=fingerprints().get(filename))


def import_map() -> Markup:
    """An import map sending each module's plain URL (what `import "./common.js"` asks for) to
    its fingerprinted one, so modules are cached like every other asset."""
    plain = {
        url_for("web.static", filename=f): static_url(f)
        for f in fingerprints()
        if f.endswith(".js")
    }
    return as_json({"imports": plain})
