"""The Flask application factory."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from . import __version__, web
from .api import problems, register_blueprints, security, telemetry
from .api.bodies import JSONProvider
from .api.multipart import UploadRequest
from .api.parsing import ConvserveApi
from .config import Settings
from .imaging import set_pillow_pixel_limit
from .registry.db import make_engine
from .registry.store import Registry
from .serving.dataplane import DataPlane
from .tokens import Tokens


@dataclass
class Services:
    """What the views reach through `current_app.extensions["convserve"]`."""

    settings: Settings
    registry: Registry
    serving: DataPlane
    tokens: Tokens


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask("convserve")
    app.config.update(
        API_TITLE="convserve",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        # Swagger UI from the pinned swagger-ui-bundle package, served by this app: /docs works
        # offline and loads nothing from another host.
        OPENAPI_SWAGGER_UI_URL=web.SWAGGER_ASSETS,
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_upload_bytes,
    )
    app.json = JSONProvider(app)  # request JSON with bounded nesting
    app.json.ensure_ascii = False  # messages say 6×3×5×5, readable in curl's output
    app.request_class = UploadRequest
    registry = Registry(
        make_engine(settings.database_url),
        settings.limits,
        # whatever can be uploaded can be unpacked (VGG-16's 528 MB .npz under the default)
        max_weight_bytes=settings.max_upload_bytes,
    )
    serving = DataPlane(
        registry,
        cache_bytes=settings.model_cache_bytes,
        batch_bytes=settings.batch_bytes,
        max_batch=settings.max_batch,
        max_image_pixels=settings.max_image_pixels,
        batching=settings.batching,
        max_request_pixels=settings.max_request_pixels,
    )
    set_pillow_pixel_limit(settings.max_image_pixels)
    tokens = Tokens(settings.admin_token, settings.token_file)
    if settings.reads_need_token and not tokens.configured:
        raise ValueError(
            "CONVSERVE_READS_NEED_TOKEN needs tokens: set CONVSERVE_TOKEN_FILE or "
            "CONVSERVE_ADMIN_TOKEN"
        )
    app.extensions["convserve"] = Services(settings, registry, serving, tokens)
    problems.init_app(app)
    telemetry.init_app(app)
    security.init_app(app)
    api = ConvserveApi(app)
    register_blueprints(api)
    web.init_app(app)
    serving.warm_up(settings.warmup)
    return app
