"""The multipart/form-data reader of predict requests against werkzeug's encoder and bad bodies."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from service.api import multipart
from service.errors import Malformed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4), st.data())
def test_reads_what_werkzeug_writes(contents, data):
    names = [data.draw(st.sampled_from(["image", "other"])) for _ in contents]
    form = MultiDict(
        [
            (n, FileStorage(io.BytesIO(c), f"f{i}.png"))
            for i, (n, c) in enumerate(zip(names, contents, strict=True))
        ]
    )
    boundary, body = encode_multipart(form, boundary="----convserve-test-boundary")
    parts = multipart.parse(body, boundary)
    sent = [(n, f.filename, f.stream.getvalue()) for n, f in form.items(multi=True)]
    assert [(p.name, p.filename, p.data) for p in parts] == sent  # in the body's order


def body(*parts: bytes, boundary=b"xyz", preamble=b"", epilogue=b"") -> bytes:
    out = preamble
    for p in parts:
        out += b"--" + boundary + b"\r\n" + p + b"\r\n"
    return out + b"--" + boundary + b"--" + epilogue


def test_preamble_epilogue_fields_without_filenames_and_data_that_looks_like_delimiters():
    tricky = b"\r\n--xy\r\n\r\n-xyz--\r\n"  # almost a delimiter, never one
    got = multipart.parse(
        body(
            b'Content-Disposition: form-data; name="image"; filename="a b.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + tricky,
            b'content-disposition: form-data; name="note"\r\n\r\nhello',
            preamble=b"ignored\r\n",
            epilogue=b"\r\nignored too",
        ),  # fmt: skip
        "xyz",
    )
    assert [(p.name, p.filename, p.data) for p in got] == [
        ("image", "a b.png", tricky),
        ("note", None, b"hello"),
    ]


@pytest.mark.parametrize(
    ("raw", "boundary", "message"),
    [
        (b"whatever", None, "needs a boundary"),
        (b"no delimiter here", "xyz", "no part delimited"),
        (b'--xyz\r\nContent-Disposition: form-data; name="image"\r\n\r\ndata', "xyz", "cut short"),
        (b"--xyzgarbage\r\n--xyz--", "xyz", "not followed by CRLF"),
        (b'--xyz\r\nContent-Disposition: form-data; name="image"\r\n--xyz--', "xyz", "never end"),
        (b"--xyz\r\nContent-Type: image/png\r\n\r\ndata\r\n--xyz--", "xyz", "no Content-Disp"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(raw, boundary, message):
    with pytest.raises(Malformed, match=message):
        multipart.parse(raw, boundary)
