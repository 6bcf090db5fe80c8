"""Reading and writing `.npz` weight files safely: never unpickling, bounded in size."""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Mapping
from typing import BinaryIO

import numpy as np

from .errors import Problem, SpecError

#: Default bound on the uncompressed size of all arrays in one file.
DEFAULT_MAX_BYTES = 512 * 1024 * 1024

# numpy parses every .npy header with ast.literal_eval, which CPython 3.11 (before the fix of
# python/cpython#106905) can fail with a spurious "SystemError: AST constructor recursion depth
# mismatch" when threads parse at once, as gunicorn's threaded workers do. Loads take turns.
_NPY_LOCK = threading.Lock()


def _bad(message: str) -> SpecError:
    return SpecError([Problem(None, "weights", message)])


def load_npz(data: bytes | BinaryIO, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, np.ndarray]:
    """Arrays of an `.npz` (as `numpy.savez` writes a PyTorch state_dict), by name.

    Object arrays are refused rather than unpickled; a file whose arrays would unpack to more
    than `max_bytes` is refused before anything is decompressed.
    """
    buf = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    try:
        with zipfile.ZipFile(buf) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > max_bytes:
                raise _bad(
                    f"the weights unpack to {total:,} bytes; the limit is {max_bytes:,} bytes"
                )
            bad = [i.filename for i in infos if not i.filename.endswith(".npy")]
            if bad:
                raise _bad(f"the .npz holds entries that are not .npy arrays: {', '.join(bad[:5])}")
    except zipfile.BadZipFile:
        raise _bad(
            "the weights are not an .npz file (a zip of .npy arrays, as numpy.savez writes)"
        ) from None
    buf.seek(0)
    try:
        with _NPY_LOCK, np.load(buf, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except ValueError as err:
        if "pickle" in str(err):
            raise _bad(
                "the .npz holds object arrays, which only unpickling could read; convserve "
                "never unpickles: save plain numeric arrays (tensor.numpy())"
            ) from None
        raise _bad(f"the .npz could not be read: {err}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise _bad(f"the .npz could not be read: {err}") from None


def dump_npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An uncompressed `.npz` of the arrays, in key order."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(arrays[k]) for k in sorted(arrays)})
    return buf.getvalue()
