"""convserve: register, inspect and serve convolutional neural networks."""

from .engine.blas import prefer_avx512_kernels

prefer_avx512_kernels()  # before anything imports NumPy; see service/engine/blas.py

__version__ = "0.1.0"
