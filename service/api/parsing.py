"""flask-smorest set-up: a multipart location that merges form fields and files, and problem+json
as the documented error body."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Request
from flask_smorest import Api, Blueprint
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import MultiDict

from service.errors import UnsupportedMedia
from service.weights import HashingFile


class Parser(FlaskParser):
    """webargs' Flask parser, with 400 for unreadable requests and a multipart location."""

    DEFAULT_VALIDATION_STATUS = 400
    __location_map__ = {**FlaskParser.__location_map__, "form_and_files": "load_form_and_files"}

    def load_form_and_files(self, req: Request, schema: ma.Schema) -> Any:
        if req.mimetype != "multipart/form-data":
            got = req.mimetype or "no type"
            raise UnsupportedMedia(f"this endpoint takes multipart/form-data (curl -F), not {got}")
        merged = MultiDict(req.form)
        merged.update(req.files)
        return self._makeproxy(merged, schema)


class UploadRequest(Request):
    """Flask's request, writing each uploaded file to a temporary file that hashes it on the way
    (in memory while small): a weights file of hundreds of megabytes is neither held in memory
    nor read again to learn its sha256."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> HashingFile:
        return HashingFile()


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

    def _register_error_handlers(self) -> None:
        """Errors are answered by service.api.problems, in problem+json."""
