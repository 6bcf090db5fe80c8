"""flask-smorest set-up: webargs' request parser (JSON bodies, query strings and a multipart
location whose reader is multipart.form_and_files), and problem+json as the documented error
body."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Request
from flask_smorest import Api, Blueprint
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.datastructures import MultiDict

from service.errors import Malformed, UnsupportedMedia

from . import bodies, multipart, openapi_contract


def single_values(values: MultiDict, schema: ma.Schema, what: str) -> None:
    """400 when a field that takes one value (not a list) is given several times: which one the
    server would use is a guess, and a client sending two `spec` parts or `?limit=1&limit=2`
    means something the server cannot know."""
    for name, field in schema.fields.items():
        key = field.data_key or name
        if isinstance(field, ma.fields.List | ma.fields.Tuple):
            continue
        n = len(values.getlist(key))
        if n > 1:
            raise Malformed(f"{what} {key!r} is given {n} times; give it once")


class Parser(FlaskParser):
    """webargs' Flask parser, with 400 for unreadable requests and a multipart location."""

    DEFAULT_VALIDATION_STATUS = 400
    __location_map__ = {**FlaskParser.__location_map__, "form_and_files": "load_form_and_files"}

    def _raw_load_json(self, req: Request) -> Any:
        """JSON bodies through bodies.loads: 400 naming what is wrong, nesting bounded. Every
        view that takes a JSON body needs one (its OpenAPI requestBody is required): none is a
        400 and another media type a 415, never the defaults of an empty object."""
        raw = req.get_data(cache=True)
        if not raw.strip():
            raise Malformed("this request needs a JSON body (Content-Type: application/json)")
        if not is_json_request(req):
            got = req.mimetype or "no Content-Type"
            raise UnsupportedMedia(f"send the body as application/json, not {got}")
        return bodies.loads(raw, "the JSON body")

    def load_querystring(self, req: Request, schema: ma.Schema) -> Any:
        single_values(req.args, schema, "query parameter")
        return super().load_querystring(req, schema)

    def load_form_and_files(self, req: Request, schema: ma.Schema) -> Any:
        merged = multipart.form_and_files(req)
        single_values(merged, schema, "multipart part")
        return self._makeproxy(merged, schema)


class ApiBlueprint(Blueprint):
    ARGUMENTS_PARSER = Parser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "form_and_files": "multipart/form-data",
    }


class ProblemSchema(ma.Schema):
    type = ma.fields.String(metadata={"example": "urn:convserve:problem:invalid-spec"})
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    errors = ma.fields.List(
        ma.fields.Dict(),
        metadata={"description": "for validation failures: {layer, field, message} per problem"},
    )


class ConvserveApi(Api):
    ERROR_SCHEMA = ProblemSchema

    def init_app(self, app: Any, *, spec_kwargs: Any = None) -> None:
        super().init_app(app, spec_kwargs=spec_kwargs)
        generate = self.spec.to_dict
        self.spec.to_dict = lambda: openapi_contract.finish(generate())  # type: ignore[method-assign]

    def _register_error_handlers(self) -> None:
        """Errors are answered by service.api.problems, in problem+json."""
