"""The demo model: `convserve db seed` registers the trained digits model into an empty registry,
and it classifies the shipped examples correctly through the HTTP API."""

from __future__ import annotations

import json

import pytest

from service.cli import main
from tests.helpers import ROOT

EXAMPLES = sorted((ROOT / "models" / "examples").glob("*.png"))


@pytest.fixture
def seeded(db_url, monkeypatch, make_app, capsys):
    app = make_app()  # migrated
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.chdir(ROOT)
    assert main(["db", "seed"]) == 0
    assert "registered digits version 1 as 'production'" in capsys.readouterr().out
    return app


def test_seed_registers_digits_once(seeded, capsys):
    registry = seeded.extensions["convserve"].registry
    model = registry.model("digits")
    assert model.aliases == {"production": 1} and model.version_count == 1
    events = registry.history("digits").items
    assert [(e.actor, e.action) for e in events] == [
        ("convserve-db-seed", "set_alias"),
        ("convserve-db-seed", "register"),
    ]
    assert main(["db", "seed"]) == 0  # not empty any more: nothing happens
    assert "nothing seeded" in capsys.readouterr().out
    assert registry.model("digits").version_count == 1


def test_the_examples_are_classified_correctly(seeded):
    client = seeded.test_client()
    assert len(EXAMPLES) >= 3
    for path in EXAMPLES:
        want = path.stem.split("-")[0]
        resp = client.post(
            "/v1/models/digits/predict?top_k=1",
            data={"image": (path.open("rb"), path.name)},
        )
        assert resp.status_code == 200, resp.data
        top = resp.get_json()["predictions"][0]["top"][0]
        assert top["label"] == want and top["probability"] > 0.5, (path.name, top)


def test_the_spec_records_how_it_was_trained():
    spec = json.loads((ROOT / "models" / "digits.json").read_text())
    meta = spec["metadata"]
    assert meta["trained_by"] == "models/train_digits.py"
    assert meta["heldout_accuracy"] >= 0.97
    assert (ROOT / "models" / "digits.npz").stat().st_size < 200_000
