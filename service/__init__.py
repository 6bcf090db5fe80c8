"""convserve: register, inspect and serve convolutional neural networks."""

__version__ = "0.1.0"
