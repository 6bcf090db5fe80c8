"""`convserve inspect`: the printed table (a golden file), JSON output and error reporting."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

from service import __version__
from service.architecture import Architecture
from service.cli import main
from service.weights import dump_npz
from tests.helpers import ROOT, load_model_spec

GOLDEN = ROOT / "tests" / "golden" / "lenet_table.txt"


def test_lenet_table_matches_the_golden_file(capsys):
    assert main(["inspect", str(ROOT / "models" / "lenet.json")]) == 0
    printed = capsys.readouterr().out
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(printed)
    assert printed == GOLDEN.read_text()


def test_json_output_is_the_layer_table(capsys):
    assert main(["inspect", "--json", str(ROOT / "models" / "lenet.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == Architecture.from_spec(load_model_spec("lenet")).table()


def test_explain_adds_a_sentence_per_layer(capsys):
    main(["inspect", "--explain", str(ROOT / "models" / "lenet.json")])
    assert "6 filters of 3×5×5, each spanning all 3 input maps → 6 maps of 10×10" in (
        capsys.readouterr().out
    )


def test_invalid_spec_exits_2_with_every_problem(tmp_path, capsys):
    spec = load_model_spec("lenet")
    spec["layers"][3]["in_channels"] = 1
    spec["layers"][7]["in_features"] = 120
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "conv2 expects in_channels=1 but pool1 produces 3 feature maps" in err
    assert "fc1 expects in_features=120" in err


def test_weights_are_checked(tmp_path, capsys):
    arch = Architecture.from_spec(load_model_spec("lenet"))
    good, bad = arch.random_weights(), arch.random_weights()
    del bad["fc2.bias"]
    (tmp_path / "good.npz").write_bytes(dump_npz(good))
    (tmp_path / "bad.npz").write_bytes(dump_npz(bad))
    spec = str(ROOT / "models" / "lenet.json")
    assert main(["inspect", spec, "--weights", str(tmp_path / "good.npz")]) == 0
    assert "matches the spec" in capsys.readouterr().out
    assert main(["inspect", spec, "--weights", str(tmp_path / "bad.npz")]) == 2
    assert "the weights lack 'fc2.bias'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "fragment"), [("{not json", "is not valid JSON"), (None, "No such")]
)
def test_unreadable_spec(tmp_path, capsys, content, fragment):
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    assert main(["inspect", str(path)]) == 2
    assert fragment in capsys.readouterr().err


def test_console_script_reads_stdin():
    spec = json.dumps(load_model_spec("lenet"))
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "inspect", "--json", "-"],
        input=spec,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert json.loads(run.stdout)["totals"]["params"] == 16_644


def test_version_prints_the_package_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"convserve {__version__}\n"
    assert __version__ == importlib.metadata.version("convserve")  # pyproject.toml says the same


@pytest.mark.parametrize("table", [["lenet.json"], ["--explain", "--json", "googlenet.json"]])
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(table):
    """`convserve inspect … | head`: no traceback, exit status 1 (the output was cut short)."""
    *options, name = table
    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first write
    try:
        run = subprocess.run(
            [sys.executable, "-m", "service.cli", "inspect", *options, f"models/{name}"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
    finally:
        os.close(write)
    assert (run.returncode, run.stderr) == (1, "")


def test_init_weights_writes_weights_that_fit(tmp_path, capsys):
    out = tmp_path / "w.npz"
    assert (
        main(["init-weights", str(ROOT / "models" / "lenet.json"), "-o", str(out), "--seed", "3"])
        == 0
    )
    arch = Architecture.from_spec(load_model_spec("lenet"))
    from service.weights import load_npz

    loaded = arch.check_weights(load_npz(out.read_bytes()))
    assert set(loaded) == set(arch.random_weights(3))
    assert (loaded["fc1.weight"] == arch.random_weights(3)["fc1.weight"]).all()
