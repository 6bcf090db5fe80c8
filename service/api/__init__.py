"""The HTTP layer: Flask blueprints that parse, call the domain, and answer. Nothing else."""

from __future__ import annotations

from flask_smorest import Api

from service.architecture import SpecSchema

from . import health, inspect, registry


def register_blueprints(api: Api) -> None:
    api.spec.components.schema("Spec", schema=SpecSchema)
    for module in (health, registry, inspect):
        api.register_blueprint(module.blp)
