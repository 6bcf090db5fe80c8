"""convserve: register, inspect and serve convolutional neural networks.

Importing it changes nothing in the process: the settings that make the engine fast (OpenBLAS
kernels, BLAS and engine threads, glibc's reuse of freed memory) belong to the processes that
serve (deploy/gunicorn.conf.py and service.wsgi, the `convserve` command). A notebook opts in
with `service.runtime.tune_process()`, before NumPy is imported for the BLAS part to count.
"""

__version__ = "0.1.0"
