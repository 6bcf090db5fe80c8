"""multipart/form-data bodies (RFC 7578): read in memory for predict, streamed for uploads.

Two readers because the two kinds of request pull in opposite directions, and neither reader
would serve both:

* **Predict** (`parse`): a few images, each decoded whole anyway, so the body is held in memory
  and split on its boundary in one pass. Werkzeug's form parser streams parts through a state
  machine, spooling large ones to disk, and costs ~130 µs on a one-image request, a sixth of the
  whole request; splitting the bytes does the same work for a tenth. The body size is bounded
  beforehand by MAX_CONTENT_LENGTH (413 above it).
* **Registration** (`UploadRequest`, `form_and_files`): a weights file can be hundreds of
  megabytes, so it must not be held in memory. Werkzeug's streaming parser writes each file part
  to a temporary file that hashes it on the way (`service.weights.HashingFile`, in memory while
  small), so the upload is neither held in memory nor read again to learn its sha256. The API's
  request parser (parsing.py) reads this for the `form_and_files` location.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Request
from werkzeug.datastructures import MultiDict
from werkzeug.http import parse_options_header

from service.errors import Malformed, UnsupportedMedia
from service.weights import HashingFile

# ------------------------------------------------------------------ in memory, for predict


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    data: bytes


def parse(body: bytes, boundary: str | None) -> list[Part]:
    """The parts of a multipart body in order; Malformed when it does not follow the format."""
    if not boundary:
        raise Malformed("multipart/form-data needs a boundary parameter in its Content-Type")
    delimiter = b"--" + boundary.encode("latin-1")
    if body.startswith(delimiter):
        rest = body[len(delimiter) :]
    else:  # a preamble, which RFC 2046 allows before the first delimiter
        start = body.find(b"\r\n" + delimiter)
        if start < 0:
            raise Malformed("the multipart body has no part delimited by its boundary")
        rest = body[start + 2 + len(delimiter) :]
    parts = []
    for chunk in rest.split(b"\r\n" + delimiter):
        if chunk.startswith(b"--"):
            return parts  # the closing delimiter; anything after it is an epilogue
        if not chunk.startswith(b"\r\n"):
            raise Malformed("the multipart body is malformed: a delimiter is not followed by CRLF")
        head, found, data = chunk[2:].partition(b"\r\n\r\n")
        if not found:
            if not chunk.endswith(b"\r\n"):
                raise Malformed("the multipart body is malformed: a part's headers never end")
            # Headers ending at the next delimiter: an empty body (as werkzeug writes one).
            head, data = chunk[2:-2], b""
        parts.append(_part(head, data))
    raise Malformed("the multipart body is cut short: it has no closing boundary")


def _part(head: bytes, data: bytes) -> Part:
    for line in head.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            kind, params = parse_options_header(value.strip())
            if kind.lower() == "form-data" and "name" in params:
                return Part(params["name"], params.get("filename"), data)
    raise Malformed("a multipart part has no Content-Disposition: form-data; name=...")


# ---------------------------------------------------------------- streamed, for uploads


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


def form_and_files(req: Request) -> MultiDict:
    """The form fields and the files of a streamed multipart body in one MultiDict (415 for a body
    of another media type)."""
    if req.mimetype != "multipart/form-data":
        got = req.mimetype or "no type"
        raise UnsupportedMedia(f"this endpoint takes multipart/form-data (curl -F), not {got}")
    merged = MultiDict(req.form)
    for key, file in req.files.items(multi=True):
        merged.add(key, file)
    return merged
