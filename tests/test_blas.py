"""OpenBLAS kernel choice: AVX-512 kernels when the CPU has them, never over the user's choice."""

from __future__ import annotations

from service.engine import blas


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
