"""OpenBLAS kernel choice: AVX-512 kernels when the CPU has them, never over the user's choice."""

from __future__ import annotations

import pytest

from service.runtime import blas


def test_avx512_cpus_get_skylakex_kernels(monkeypatch):
    monkeypatch.setattr(blas, "_cpu_flags", lambda: {"avx2", "avx512f"})
    env: dict[str, str] = {}
    assert blas.prefer_avx512_kernels(env) == "SkylakeX" and env == {
        "OPENBLAS_CORETYPE": "SkylakeX"
    }


def test_other_cpus_are_left_alone(monkeypatch):
    monkeypatch.setattr(blas, "_cpu_flags", lambda: {"avx2"})
    env: dict[str, str] = {}
    assert blas.prefer_avx512_kernels(env) is None and env == {}


def test_a_value_already_set_wins(monkeypatch):
    monkeypatch.setattr(blas, "_cpu_flags", lambda: {"avx512f"})
    env = {"OPENBLAS_CORETYPE": "Haswell"}
    assert blas.prefer_avx512_kernels(env) == "Haswell" and env["OPENBLAS_CORETYPE"] == "Haswell"


def test_blas_info_names_the_library():
    assert blas.blas_info()  # e.g. "scipy-openblas 0.3.31 (SkylakeX)"


def test_each_worker_gets_its_share_of_the_cpus(monkeypatch):
    monkeypatch.setattr(blas, "available_cpus", lambda: 8)
    env: dict[str, str] = {}
    assert blas.share_cpus_between(2, env) == 4
    assert env == {"OPENBLAS_NUM_THREADS": "1", "CONVSERVE_ENGINE_THREADS": "4"}
    env = {}
    assert blas.share_cpus_between(16, env) == 1 and env["CONVSERVE_ENGINE_THREADS"] == "1"


@pytest.mark.parametrize("var", ["OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"])
def test_a_thread_count_already_set_wins(var):
    env = {var: "3"}
    blas.share_cpus_between(2, env)
    assert {k: v for k, v in env.items() if k in blas.THREAD_VARS} == {var: "3"}


@pytest.mark.parametrize(
    ("v2", "v1", "cpus"),
    [
        ("max 100000\n", None, 64),  # no limit
        ("150000 100000\n", None, 2),  # --cpus 1.5: rounded up
        (None, ("200000", "100000"), 2),  # cgroup v1
        (None, ("-1", "100000"), 64),  # v1, no limit
        (None, None, 64),  # no cgroup files
    ],
)
def test_cpus_follow_a_cgroup_quota(tmp_path, monkeypatch, v2, v1, cpus):
    monkeypatch.setattr(blas.os, "sched_getaffinity", lambda _pid: set(range(64)))
    monkeypatch.setattr(blas, "CGROUP_V2_CPU_MAX", str(tmp_path / "cpu.max"))
    monkeypatch.setattr(blas, "CGROUP_V1_CPU", str(tmp_path / "v1"))
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2)
    if v1 is not None:
        (tmp_path / "v1").mkdir()
        (tmp_path / "v1" / "cpu.cfs_quota_us").write_text(v1[0])
        (tmp_path / "v1" / "cpu.cfs_period_us").write_text(v1[1])
    assert blas.available_cpus() == cpus


def test_the_server_config_gives_each_worker_its_share(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    probe = (
        "import json, runpy; runpy.run_path('deploy/gunicorn.conf.py'); import numpy; "
        "from service.runtime.blas import available_cpus, blas_threads; "
        "from service.kernels.parallel import threads; "
        "print(json.dumps([available_cpus(), blas_threads(), threads()]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in blas.THREAD_VARS}
    env.update(WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    cpus, blas_threads, engine_threads = json.loads(out.stdout.splitlines()[-1])
    assert blas_threads == 1  # BLAS threads spin; the engine's own threads share the cores
    assert engine_threads == max(1, cpus // 2)
