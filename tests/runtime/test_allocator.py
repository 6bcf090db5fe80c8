"""glibc is asked to keep freed activation memory, unless the user tuned it."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.runtime import allocator

ROOT = Path(__file__).resolve().parents[2]


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


def test_sets_the_mmap_threshold_before_the_trim_threshold():
    libc = FakeLibc()
    assert allocator.keep_freed_memory({}, libc)
    # The mmap threshold first: the trim threshold alone would switch off glibc's adaptation.
    assert libc.calls == [(-3, 32 << 20), (-1, 64 << 20)]


@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_MMAP_THRESHOLD_": "65536"},
        {"MALLOC_TRIM_THRESHOLD_": "0"},
        {"CONVSERVE_KEEP_FREED_MEMORY": "0"},
    ],  # fmt: skip
)
def test_the_users_settings_win(env):
    libc = FakeLibc()
    assert not allocator.keep_freed_memory(env, libc) and libc.calls == []


def test_a_libc_without_mallopt_is_left_alone():
    assert not allocator.keep_freed_memory({}, object())


PROBE = """
import json, resource, sys
import service
if sys.argv[2] == "tune":
    from service.runtime import tune_process
    tune_process()  # applies the setting unless the environment says otherwise
import numpy as np
from service.architecture import Architecture
from service.engine import compile_plan
spec = json.loads(sys.argv[1])
plan = compile_plan(Architecture.from_spec(spec))
x = np.ones((4, 16, 64, 64), np.float32)
plan.run(x); plan.run(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    plan.run(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallopt"), reason="needs glibc's mallopt")
def test_repeated_calls_reuse_memory_instead_of_faulting_in_new_pages():
    conv = {"type": "conv2d", "in_channels": 16, "out_channels": 16, "kernel_size": 3,
            "padding": 1}  # fmt: skip
    spec = {"input": {"shape": [16, 64, 64]},
            "layers": [{"name": f"c{i}", **conv} for i in range(6)]}  # fmt: skip

    def faults(tune="tune", **env):
        out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(spec), tune], cwd=ROOT,
                             env={"PATH": "/usr/bin:/bin", **env}, capture_output=True,
                             text=True, check=True)  # fmt: skip
        return float(out.stdout)

    kept, plain = faults(), faults(CONVSERVE_KEEP_FREED_MEMORY="0")
    # Each map is 1 MiB (256 pages): without the setting some are unmapped and faulted back in.
    assert kept < 20 <= plain, (kept, plain)
    # Importing convserve alone changes nothing: a process opts in with tune_process().
    assert faults("no") >= 20


def test_importing_convserve_changes_no_environment_variable():
    probe = (
        "import json, os; before = dict(os.environ); "
        "import service, service.app, service.serving.dataplane, service.engine.plan, service.cli; "
        "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))"
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert json.loads(out.stdout) == []
