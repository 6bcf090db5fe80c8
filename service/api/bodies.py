"""Request bodies read defensively: every decoder here bounds the memory and time a body can cost.

- `read_body`: the body, inflated as its `Content-Encoding` says (gzip, deflate) in a stream that
  stops at the upload limit (413), never holding more than the limit, and refusing early a JSON
  body that holds more values than the request may use.
- `loads`: JSON with a nesting limit (400, not a RecursionError deep in a parser or validator).
- `infer_request`: an Open Inference Protocol request; each input's `data` array of numbers is
  kept as text and read straight into a NumPy array once its declared shape has been checked
  against the count of values, so no Python list of millions of floats is ever built.
- `tensor`: an input's `data` (read by `infer_request` or plain JSON) as an array of its shape.

Views call these and stay about HTTP; nothing here knows a route.
"""

from __future__ import annotations

import json
import re
import secrets
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import Request
from flask.json.provider import DefaultJSONProvider

from service.errors import InvalidInput, Malformed, TooLarge, UnsupportedMedia

#: Deepest JSON nesting accepted. Specs nest 4-5 levels and input arrays one per dimension; deeper
#: is refused before a recursive parser, validator or serialiser could run out of stack.
MAX_JSON_DEPTH = 64
#: Values a request may hold beyond its input tensors (ids, names, parameters, outputs).
SPARE_VALUES = 10_000
#: Bytes read from the client (and inflated) per step.
CHUNK = 256 * 1024

_ENCODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


# -- the body --------------------------------------------------------------------------------


@dataclass
class ValueBudget:
    """Refuses a JSON text (the first `json_bytes` of a body, or all of it) holding more values
    than `max_values`, counted as they arrive: every value but the first in an array or object
    follows a comma, so commas and brackets bound the values a parser would build."""

    max_values: int
    what: str = "the request"
    json_bytes: int | None = None
    #: Why no more values can be used, for the refusal.
    why: str = "more than it can use"
    _seen_bytes: int = 0
    _count: int = 0

    def feed(self, piece: bytes | bytearray | memoryview) -> None:
        if self.json_bytes is not None:
            room = self.json_bytes - self._seen_bytes
            piece = memoryview(piece)[: max(room, 0)]
        self._seen_bytes += len(piece)
        if not piece:
            return
        data = piece if isinstance(piece, bytes | bytearray) else bytes(piece)
        self._count += data.count(b",") + data.count(b"[") + data.count(b"{")
        if self._count > self.max_values:
            raise TooLarge(
                f"{self.what} holds more than {self.max_values:,} JSON values, {self.why}; it "
                f"was refused before being parsed"
            )


def read_body(req: Request, limit: int, budget: ValueBudget | None = None) -> bytes | bytearray:
    """The request body, inflated as `Content-Encoding` says, at most `limit` bytes (413 above).

    The compressed body is read in chunks and inflated as it arrives, so a small compressed body
    that would inflate past the limit is refused once the limit is reached, holding at most
    `limit` bytes. `budget`, when given, sees every inflated piece and may refuse earlier.
    """
    encoding = (req.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding in ("", "identity"):
        out = bytearray()
        while True:
            chunk = req.stream.read(CHUNK)
            if not chunk:
                return out
            if len(out) + len(chunk) > limit:
                raise TooLarge(
                    f"the body is larger than {limit:,} bytes (CONVSERVE_MAX_UPLOAD_BYTES)"
                )
            if budget is not None:
                budget.feed(chunk)
            out += chunk
    wbits = _ENCODINGS.get(encoding)
    if wbits is None:
        raise UnsupportedMedia(f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")
    out = bytearray()
    inflater = zlib.decompressobj(wbits)
    while chunk := req.stream.read(CHUNK):
        data = chunk
        while True:
            if inflater.eof:  # another gzip member follows (RFC 1952 2.2)
                inflater = zlib.decompressobj(wbits)
            # Inflate a step at a time, at most one byte past the room left: getting that byte
            # means the limit is passed, and the budget sees each step before the next.
            step = min(limit - len(out) + 1, CHUNK * 4)
            try:
                piece = inflater.decompress(data, step)
            except zlib.error as err:
                raise Malformed(f"the {encoding} body cannot be decompressed: {err}") from None
            if len(out) + len(piece) > limit:
                raise TooLarge(
                    f"the {encoding} body decompresses to more than {limit} bytes "
                    f"(CONVSERVE_MAX_UPLOAD_BYTES); it was refused while inflating"
                )
            if budget is not None:
                budget.feed(piece)
            out += piece
            data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
            if not data and (inflater.eof or len(piece) < step):
                break  # this chunk is used up (a full step may leave output inside zlib)
    if not inflater.eof:
        raise Malformed(f"the {encoding} body is cut short: its compressed stream does not end")
    return out


#: Unread request body a refusal reads and discards so the client sees the answer (see below).
DRAIN_BYTES = 8 * 1024 * 1024


def drain_unread(environ: dict[str, Any], limit: int = DRAIN_BYTES) -> int:
    """Read and discard what is left of a request body the answer did not need (a 401 to an
    upload, a 404 for an unknown model): at most `limit` bytes; returns how many were read.

    gunicorn keeps such a connection alive with the rest of the body unread in it; when the
    client sends its next request on it, the worker may find no request there yet and close it,
    and the client sees a reset instead of an answer (1 in 3 at 200 KB with a keep-alive client).
    Reading the rest first leaves the connection clean. Bodies longer than `limit` are left to
    gunicorn, which drains them itself before the next request (and nothing is read when the
    declared length already says so).
    """
    length = environ.get("CONTENT_LENGTH")
    if length and length.isdigit() and int(length) > limit:
        return 0
    stream = environ.get("wsgi.input")
    if stream is None:
        return 0
    read = 0
    try:
        while read < limit:
            chunk = stream.read(min(CHUNK, limit - read))
            if not chunk:
                break
            read += len(chunk)
    except (OSError, ValueError):  # the client went away: nothing to protect
        pass
    return read


def check_instance_values(raw: bytes | bytearray, max_values: int, why: str) -> None:
    """413 when a JSON body of instances holds more values than `max_values` (+ a little for the
    rest of the document), counted without parsing it: refused before any is built."""
    ValueBudget(max_values + SPARE_VALUES, "the request", why=why).feed(raw)


# -- JSON ------------------------------------------------------------------------------------

# JSON strings (their contents may hold brackets that are not structure).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(raw: bytes | bytearray | memoryview) -> int:
    """How deeply arrays and objects nest in a JSON text (for valid JSON; a bound otherwise)."""
    data = bytes(raw) if isinstance(raw, memoryview) else raw
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # not enough brackets to nest too deep: no need to look
    if b'"' in data:
        data = _STRING.sub(b'""', data)
    brackets = np.frombuffer(data.translate(None, _NOT_BRACKET), np.uint8)
    deepest, depth = 0, 0
    for start in range(0, len(brackets), 1 << 20):  # in slices: memory stays small
        part = brackets[start : start + (1 << 20)]
        step = np.where((part & 0x0F) == 0x0B, 1, -1)  # "[" and "{" end in 0xB, "]" and "}" in 0xD
        levels = depth + np.cumsum(step, dtype=np.int64)
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
    return deepest


def check_depth(raw: bytes | bytearray | memoryview, what: str = "the JSON body") -> None:
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise Malformed(
            f"{what} nests arrays or objects {depth} levels deep; at most {MAX_JSON_DEPTH} are "
            f"accepted"
        )


def loads(raw: str | bytes | bytearray | memoryview, what: str = "the JSON body") -> Any:
    """Parse JSON text; Malformed (400) when it is not JSON or nests too deep."""
    if isinstance(raw, str):
        check_depth(raw.encode("utf-8", "surrogatepass"), what)
    else:
        raw = bytes(raw) if isinstance(raw, memoryview) else raw
        check_depth(raw, what)
    try:
        return json.loads(raw)
    except RecursionError:  # the depth check counts brackets; a parser may still disagree
        raise Malformed(f"{what} nests arrays or objects too deeply") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise Malformed(f"{what} is not valid JSON: {err}") from None


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, with `request.get_json()` refusing nesting deeper than MAX_JSON_DEPTH (400)
    instead of letting a RecursionError through as a 500."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        check_depth(s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s)
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise Malformed("the JSON body nests arrays or objects too deeply") from None


# -- the Open Inference Protocol -------------------------------------------------------------

# `"data": [` where a tensor's values start.
_DATA_KEY = re.compile(rb'"data"\s*:\s*\[')
# The first byte that cannot be part of an array of plain numbers.
_NOT_NUMERIC = re.compile(rb"[^0-9+\-.eE,\[\] \t\r\n]")
# Brackets become blanks: the values read flat, in row-major order, as Triton reads nested data.
_BRACKETS_TO_BLANKS = bytes.maketrans(b"[]", b"  ")


@dataclass(frozen=True)
class NumericText:
    """An input's `data`: a JSON array of numbers (nested arrays read flat), still as text."""

    text: bytes

    @property
    def count(self) -> int:
        """How many values it holds, counted without reading any (commas, brackets as blanks)."""
        flat = self.text.translate(None, b"[] \t\r\n")
        return flat.count(b",") + 1 if flat else 0

    def to_array(self, what: str) -> np.ndarray:
        """The values as float32 (each read as a double first, as JSON parsers do)."""
        expected = self.count
        if not expected:
            return np.empty(0, np.float32)
        flat = self.text.translate(_BRACKETS_TO_BLANKS)
        # numpy stops at the first thing it cannot read (an error since NumPy 2.3, a warning and
        # the values so far before): a sentinel after the last value makes a short read visible.
        try:
            values = np.fromstring(flat + b",0", dtype=np.float64, sep=",")
        except ValueError:
            values = None
        if values is None or values.size != expected + 1:
            raise InvalidInput(
                f"{what}: data must be numbers separated by commas (nested arrays are read "
                f"flat, in row-major order)"
            )
        return values[:-1].astype(np.float32)


@dataclass(frozen=True)
class InferRequest:
    """An inference request: its JSON (with `NumericText` as each input's data) and the binary
    tensors that follow it (binary tensor extension)."""

    doc: dict[str, Any]
    binary: memoryview


HEADER_LENGTH = "Inference-Header-Content-Length"


def read_infer_body(req: Request, limit: int, max_values: int, why: str = "") -> bytes | bytearray:
    """Read and inflate an inference request's body (`read_body`); `infer_request` parses it.

    `max_values`: the most values the model's inputs can take in one request (refused beyond,
    while inflating), `why` says so; `limit`: CONVSERVE_MAX_UPLOAD_BYTES. Only the JSON part
    (`Inference-Header-Content-Length` bytes, when given) is counted.
    """
    length = req.headers.get(HEADER_LENGTH)
    json_bytes = int(length) if length is not None and length.strip().isdecimal() else None
    budget = ValueBudget(max_values + SPARE_VALUES, "the inference request", json_bytes, why)
    return read_body(req, limit, budget)


def infer_request(
    raw: bytes | bytearray, header_length: str | None, max_values: int, why: str = ""
) -> InferRequest:
    """Split and parse an inference request body (already inflated by `read_body`).

    `header_length` is the `Inference-Header-Content-Length` header (the JSON's length when
    binary tensors follow). `max_values` bounds the values in JSON data parsed the slow way.
    """
    body = memoryview(raw)
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        try:
            n = int(header_length) if header_length.strip().isdecimal() else int("x")
        except ValueError:
            raise Malformed(
                f"Inference-Header-Content-Length must be an integer, not {header_length!r}"
            ) from None
        if not 0 <= n <= len(body):
            raise Malformed(
                f"Inference-Header-Content-Length is {n} but the body has {len(body)} bytes"
            )
        header, binary = body[:n], body[n:]
    doc = _with_numeric_data(bytes(header), max_values + SPARE_VALUES, why)
    if not isinstance(doc, dict):
        raise Malformed("the inference request must be a JSON object")
    return InferRequest(doc, binary)


def _with_numeric_data(text: bytes, max_values: int, why: str = "") -> Any:
    """The JSON document with each input's numeric `data` array as NumericText.

    The arrays are cut out of the text and the rest parsed (small); a placeholder string stands
    where each was. Whenever that does not come out as a list of inputs with the placeholders as
    their data (a `"data"` key elsewhere, a data array holding other things than numbers), the
    whole text is parsed as JSON instead, after the count of values it holds is bounded.
    """
    nonce = secrets.token_hex(8)
    pieces, arrays, pos = [], [], 0
    for match in _DATA_KEY.finditer(text):
        start = match.end() - 1
        if start < pos:
            continue
        end = _numeric_array_end(text, start)
        if end is None:
            continue
        pieces += [text[pos:start], f'"\\u0000{nonce}:{len(arrays)}"'.encode()]
        arrays.append(NumericText(text[start:end]))
        pos = end
    if arrays:
        pieces.append(text[pos:])
        try:
            doc = loads(b"".join(pieces), "the inference request")
        except Malformed:
            doc = None
        if doc is not None and _place(doc, arrays, f"\0{nonce}:"):
            return doc
    budget = ValueBudget(max_values, "the inference request")
    if why:
        budget.why = why
    budget.feed(text)
    return loads(text, "the inference request")


def _numeric_array_end(text: bytes, start: int) -> int | None:
    """The end of the array of plain numbers opening at `text[start]` ("["), else None."""
    other = _NOT_NUMERIC.search(text, start)
    stop = len(text) if other is None else other.start()
    close = text.find(b"]", start, stop)
    if close < 0:
        return None
    if text.find(b"[", start + 1, close) < 0:
        return close + 1  # flat: the usual case
    depth = 0
    segment = np.frombuffer(text, np.uint8, count=stop - start, offset=start)
    for offset in range(0, len(segment), 1 << 20):
        part = segment[offset : offset + (1 << 20)]
        where = np.flatnonzero((part == ord("[")) | (part == ord("]")))
        if not where.size:
            continue
        levels = depth + np.cumsum(np.where(part[where] == ord("["), 1, -1), dtype=np.int64)
        closed = np.flatnonzero(levels == 0)
        if closed.size:
            return start + offset + int(where[closed[0]]) + 1
        depth = int(levels[-1])
    return None


def _place(doc: Any, arrays: list[NumericText], prefix: str) -> bool:
    """Put each array where its placeholder is: exactly once, as an input's data."""
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list):
        return False
    placed = set()
    for inp in inputs:
        data = inp.get("data") if isinstance(inp, dict) else None
        if isinstance(data, str) and data.startswith(prefix):
            index = int(data[len(prefix) :])
            if index in placed:
                return False
            placed.add(index)
            inp["data"] = arrays[index]
    return len(placed) == len(arrays)


def tensor(data: Any, shape: list[int], what: str) -> np.ndarray:
    """An input's JSON `data` (NumericText, or nested lists) as float32 of `shape`.

    The count of values is checked against the shape before any is read.
    """
    count = int(np.prod(shape))
    if isinstance(data, NumericText):
        if data.count != count:
            raise InvalidInput(
                f"{what} has shape {shape}, so {count} values, but data holds {data.count}"
            )
        return data.to_array(what).reshape(shape)
    try:
        x = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError):
        raise InvalidInput(f"{what}: data must be numbers (flat or nested)") from None
    if x.size != count:
        raise InvalidInput(f"{what} has shape {shape}, so {count} values, but data holds {x.size}")
    return x.reshape(shape)
