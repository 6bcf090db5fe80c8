"""The HTTP layer: Flask blueprints that parse, call the domain, and answer. Nothing else."""

from __future__ import annotations

from flask_smorest import Api

from . import batching, explore, health, inference, inspect, models, security, v2
from .openapi import register_spec_schemas


def register_blueprints(api: Api) -> None:
    register_spec_schemas(api)
    api.spec.components.security_scheme(
        security.BEARER,
        {
            "type": "http",
            "scheme": "bearer",
            "description": "a token of CONVSERVE_TOKEN_FILE or CONVSERVE_ADMIN_TOKEN; each "
            "operation's x-convserve-role is the least role it needs (read < predict < write "
            "< admin)",
        },
    )
    for module in (health, models, batching, inference, inspect, explore, v2):
        api.register_blueprint(module.blp)
