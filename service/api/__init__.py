"""The HTTP layer: Flask blueprints that parse, call the domain, and answer. Nothing else."""

from __future__ import annotations

from flask_smorest import Api

from service.architecture import SpecSchema

from . import health, inference, inspect, registry, v2


def register_blueprints(api: Api) -> None:
    api.spec.components.schema("Spec", schema=SpecSchema)
    for module in (health, registry, inference, inspect, v2):
        api.register_blueprint(module.blp)
