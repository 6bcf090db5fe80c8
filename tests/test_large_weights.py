"""Weights files are streamed, not held: hashed while uploaded, checked array by array from the
temporary file, stored in chunks and read back in chunks; the unpack limit is the upload limit.
(bench/register_memory.py measures a VGG-16-sized registration; these tests check the
behaviour on small files, with small chunks.)"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import weakref
import zipfile

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command

from service import weights as weights_module
from service.architecture import Architecture
from service.errors import SpecError
from service.registry.migrate import alembic_config
from service.registry.tables import blob_chunks, blobs
from service.weights import WeightsFile, check_npz, dump_npz
from tests.helpers import lenet_weights, load_model_spec, upload


def post(client, name, weights, spec=None):
    spec = load_model_spec("lenet") if spec is None else spec
    return client.post(f"/v1/models/{name}/versions", data=upload(spec, weights))


def test_weights_are_stored_and_read_back_in_chunks(client, registry, monkeypatch):
    monkeypatch.setattr(weights_module, "CHUNK_BYTES", 4096)
    data = lenet_weights(3)
    assert post(client, "big", data).status_code == 201
    with registry.engine.connect() as conn:
        sizes = (
            conn.execute(sa.select(sa.func.length(blob_chunks.c.data)).order_by(blob_chunks.c.seq))
            .scalars()
            .all()
        )
        legacy = conn.execute(sa.select(blobs.c.data)).scalar_one()
    assert len(sizes) == -(-len(data) // 4096) and sum(sizes) == len(data) and legacy == b""
    resp = client.get("/v1/models/big/versions/1/weights")
    assert resp.data == data and resp.headers["Content-Length"] == str(len(data))
    assert resp.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    x = np.zeros((1, 1, 32, 32)).tolist()
    assert client.post("/v1/models/big/predict", json={"instances": x}).status_code == 200
    # the same content twice is one blob; deleting the last version that uses it drops it all
    assert post(client, "big", data).status_code == 201
    client.delete("/v1/models/big")
    with registry.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(blob_chunks)).scalar() == 0


def test_the_unpack_limit_is_the_upload_limit(make_app):
    data = lenet_weights()
    app = make_app(max_upload_bytes=len(data) + 4096)
    assert app.extensions["convserve"].registry.max_weight_bytes == len(data) + 4096
    packed = io.BytesIO()  # compressed: small to upload, larger than the limit once unpacked
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as zf:
        with zipfile.ZipFile(io.BytesIO(data)) as src:
            for info in src.infolist():
                zf.writestr(info.filename, src.read(info))
        zf.writestr("padding.npy", b"\0" * (len(data) * 2))
    resp = post(app.test_client(), "m", packed.getvalue())
    assert resp.status_code == 422, resp.data
    assert f"the limit is {len(data) + 4096:,} bytes" in resp.get_json()["detail"]


def test_an_npy_header_claiming_an_impossible_shape_is_refused_before_reading(lenet_spec):
    arch = Architecture.from_spec(lenet_spec)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f4", "fortran_order": False, "shape": (10**5, 10**5, 10**5)}
        )
        zf.writestr("conv1.weight.npy", header.getvalue() + b"\0" * 64)
    with pytest.raises(SpecError, match=r"claims shape \(100000, 100000, 100000\)"):
        check_npz(arch, buf.getvalue())


def test_arrays_are_checked_one_at_a_time_from_the_file(lenet_spec, monkeypatch):
    """check_npz reads each array once and keeps none: what a 500 MB file needs to fit."""
    arch = Architecture.from_spec(lenet_spec)
    data = dump_npz(arch.random_weights())
    live, held, reads = [], [], []
    real = weights_module._Locked.__getitem__

    def tracked(self, key):
        held.append(sum(ref() is not None for ref in live))  # arrays still alive at this read
        reads.append(key)
        a = real(self, key)
        live.append(weakref.ref(a))
        return a

    monkeypatch.setattr(weights_module._Locked, "__getitem__", tracked)
    check_npz(arch, WeightsFile.from_bytes(data))
    assert sorted(reads) == sorted(arch.weight_specs())  # each once
    assert max(held) == 0  # every array was dropped before the next was read


def test_a_torch_save_file_points_to_numpy_savez(client):
    buf = io.BytesIO()  # the layout of torch.save's zip: archive/data.pkl, archive/data/0, …
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"conv1.weight": None}))
        zf.writestr("archive/data/0", b"\0" * 16)
        zf.writestr("archive/version", "3\n")
    resp = post(client, "m", buf.getvalue())
    assert resp.status_code == 422
    detail = resp.get_json()["detail"]
    assert "PyTorch checkpoint (torch.save" in detail and "numpy.savez" in detail
    old = pickle.dumps({"conv1.weight": [0.0]}, protocol=2)  # the pre-1.6 format: a bare pickle
    resp = post(client, "m", old)
    assert resp.status_code == 422 and "is a pickle" in resp.get_json()["detail"]


def test_the_upload_is_hashed_while_it_arrives(app):
    from service.weights import HashingFile

    data = lenet_weights()
    with app.test_request_context(
        "/v1/models/m/versions", method="POST", data=upload(load_model_spec("lenet"), data)
    ) as ctx:
        stream = ctx.request.files["weights"].stream
        assert isinstance(stream, HashingFile)
        wf = stream.weights_file()
        assert wf.sha256 == hashlib.sha256(data).hexdigest() and wf.size == len(data)


def test_the_migration_moves_stored_files_into_chunks(db_url):
    """A registry written before chunks (migration 0003) keeps every file, byte for byte."""
    from service.registry.db import make_engine
    from service.registry.store import Registry

    engine = make_engine(db_url)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    data = lenet_weights(7)
    digest = hashlib.sha256(data).hexdigest()
    spec = load_model_spec("lenet")
    with engine.begin() as conn:
        conn.execute(sa.insert(blobs).values(sha256=digest, size=len(data), data=data))
        conn.execute(
            sa.text(
                "INSERT INTO models (name, description, next_version, created_at) "
                "VALUES ('old', '', 2, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO versions (model_id, number, description, spec, spec_sha256, "
                "weights_sha256, totals, created_at) SELECT id, 1, '', :spec, 'x', :sha, '{}', "
                "CURRENT_TIMESTAMP FROM models WHERE name = 'old'"
            ),
            {"spec": json.dumps(spec), "sha": digest},
        )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert Registry(engine).weights("old", "1")[1] == data
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    with engine.connect() as conn:
        assert conn.execute(sa.select(blobs.c.data)).scalar_one() == data
    engine.dispose()
