"""convserve: register, inspect and serve convolutional neural networks."""

from .engine.allocator import keep_freed_memory
from .engine.blas import prefer_avx512_kernels

prefer_avx512_kernels()  # before anything imports NumPy; see service/engine/blas.py
keep_freed_memory()  # reuse activation memory across calls; see service/engine/allocator.py

__version__ = "0.1.0"
