"""The data plane's size defaults, in a module that imports nothing: `DataPlane` and
`service.config.Settings` both take them from here, and reading the configuration must not load
the data plane (see this package's __init__)."""

from __future__ import annotations

MiB = 1024 * 1024

#: Compiled models each worker keeps in memory (LRU beyond it).
CACHE_BYTES = 1024 * MiB
#: Activations one chunk of a batch may take; bigger batches run in chunks.
BATCH_BYTES = 256 * MiB
#: Images or instances in one request.
MAX_BATCH = 256
