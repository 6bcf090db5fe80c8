"""Reading and writing `.npz` weight files safely: never unpickling, bounded in size, and never
held whole in memory more than once.

An upload is a `WeightsFile`: the bytes on disk (a temporary file the request wrote while hashing
them) with their sha256 and size. It is checked array by array straight from that file, each
array dropped before the next is read, and stored in chunks; a model loaded for serving holds
its arrays, never the file's bytes besides them.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .errors import Problem, WeightsError

if TYPE_CHECKING:
    from .architecture import Architecture

MiB = 1024 * 1024

#: Default bound on the uncompressed size of all arrays in one file (the service passes its
#: upload limit, CONVSERVE_MAX_UPLOAD_BYTES, so whatever can be uploaded can be unpacked).
DEFAULT_MAX_BYTES = 600 * MiB

#: Pieces in which weights files are hashed, copied and stored.
CHUNK_BYTES = 8 * MiB

#: An upload smaller than this stays in memory; a larger one goes to a temporary file.
SPOOL_BYTES = 1 * MiB

# numpy parses every .npy header with ast.literal_eval, which CPython 3.11 (before the fix of
# python/cpython#106905) can fail with a spurious "SystemError: AST constructor recursion depth
# mismatch" when threads parse at once, as gunicorn's threaded workers do. Loads take turns.
_NPY_LOCK = threading.RLock()


def _bad(message: str) -> WeightsError:
    return WeightsError([Problem(None, "weights", message)])


# -- files with their hash -----------------------------------------------------------------------


@dataclass
class WeightsFile:
    """A weights file as uploaded: readable from the start, with its sha256 and size."""

    file: BinaryIO
    sha256: str
    size: int

    @classmethod
    def from_bytes(cls, data: bytes) -> WeightsFile:
        return cls(io.BytesIO(data), hashlib.sha256(data).hexdigest(), len(data))

    @classmethod
    def from_stream(cls, stream: BinaryIO) -> WeightsFile:
        """Copy a stream to a temporary file (in memory while small), hashing it on the way."""
        out = HashingFile()
        while chunk := stream.read(CHUNK_BYTES):
            out.write(chunk)
        return out.weights_file()

    @classmethod
    def spooled(cls, chunks: Iterable[bytes], sha256: str) -> WeightsFile:
        """Chunks whose sha256 is already known (the reader verified them) written to a
        temporary file, in memory while small, as HashingFile does without hashing again."""
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b")  # noqa: SIM115
        for chunk in chunks:
            out.write(chunk)
        size = out.tell()
        out.seek(0)
        return cls(out, sha256, size)

    def chunks(self, size: int | None = None) -> Iterator[bytes]:
        self.file.seek(0)
        while chunk := self.file.read(size or CHUNK_BYTES):
            yield chunk
        self.file.seek(0)


class HashingFile(tempfile.SpooledTemporaryFile):
    """A temporary file (in memory up to SPOOL_BYTES) that hashes what is written to it: an
    upload is hashed while it arrives, not read again for it."""

    def __init__(self) -> None:
        super().__init__(max_size=SPOOL_BYTES, mode="w+b")
        self._sha = hashlib.sha256()
        self._size = 0

    def write(self, data: Any) -> int:
        self._sha.update(data)
        self._size += len(data)
        return super().write(data)

    def weights_file(self) -> WeightsFile:
        self.seek(0)
        return WeightsFile(self, self._sha.hexdigest(), self._size)


# -- reading -------------------------------------------------------------------------------------


def _precheck(zf: zipfile.ZipFile, max_bytes: int | None) -> None:
    """Refuse what would unpack too large or lies about its arrays, before any array is read."""
    infos = zf.infolist()
    total = sum(i.file_size for i in infos)
    if max_bytes is not None and total > max_bytes:
        raise _bad(f"the weights unpack to {total:,} bytes; the limit is {max_bytes:,} bytes")
    bad = [i.filename for i in infos if not i.filename.endswith(".npy")]
    if bad:
        shown = ", ".join(bad[:5]) + (", …" if len(bad) > 5 else "")
        if any(name.endswith("data.pkl") for name in bad):
            raise _bad(
                f"the weights file is a PyTorch checkpoint (torch.save: {shown}), which only "
                f"unpickling could read, and convserve never unpickles. Save the state_dict as "
                f"arrays instead: numpy.savez('weights.npz', **{{k: v.numpy() for k, v in "
                f"model.state_dict().items()}})"
            )
        raise _bad(f"the .npz holds entries that are not .npy arrays: {shown}")
    for info in infos:
        with zf.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            except (ValueError, SyntaxError, TypeError, EOFError, OSError) as err:
                raise _bad(f"{info.filename} is not a readable .npy array: {err}") from None
            name = info.filename.removesuffix(".npy")
            if dtype.hasobject:
                raise _bad(
                    f"'{name}' holds object values, which only unpickling could read; convserve "
                    f"never unpickles: save plain numeric arrays (tensor.numpy())"
                )
            claimed = prod(int(d) for d in shape) * dtype.itemsize
            held = info.file_size - f.tell()
            if claimed != held:
                raise _bad(
                    f"'{name}' claims shape {tuple(shape)} of {dtype} ({claimed:,} bytes) but "
                    f"holds {held:,} bytes: the file is damaged or was not written by numpy"
                )


@contextmanager
def open_npz(
    file: BinaryIO, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> Iterator[Mapping[str, Any]]:
    """The arrays of an `.npz` by name, each read from the file only when asked for.

    Object arrays are refused rather than unpickled; a file whose arrays would unpack to more
    than `max_bytes`, or whose array headers do not match the bytes that follow them, is refused
    before any array is read.
    """
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as zf, _NPY_LOCK:
            _precheck(zf, max_bytes)
    except (zipfile.BadZipFile, EOFError) as err:
        file.seek(0)
        if file.read(1) == b"\x80":  # a pickle's PROTO opcode
            raise _bad(
                "the weights file is a pickle (torch.save before PyTorch 1.6, or pickle.dump), "
                "which convserve never unpickles. Save the state_dict as arrays instead: "
                "numpy.savez('weights.npz', **{k: v.numpy() for k, v in "
                "model.state_dict().items()})"
            ) from None
        raise _bad(
            "the weights are not an .npz file (a zip of .npy arrays, as numpy.savez writes)"
            + ("" if isinstance(err, zipfile.BadZipFile) else f": {err}")
        ) from None
    file.seek(0)
    with np.load(file, allow_pickle=False) as npz:
        yield _Locked(npz)


class _Locked(Mapping[str, Any]):
    """An NpzFile whose arrays are read one at a time (see _NPY_LOCK)."""

    def __init__(self, npz: Any):
        self.npz = npz

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            with _NPY_LOCK:
                return self.npz[key]
        except KeyError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise _bad(f"'{key}' in the .npz could not be read: {err}") from None

    def __contains__(self, key: object) -> bool:
        return key in self.npz.files

    def __iter__(self) -> Iterator[str]:
        return iter(self.npz.files)

    def __len__(self) -> int:
        return len(self.npz.files)


def load_npz(
    data: bytes | BinaryIO, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> dict[str, np.ndarray]:
    """Every array of an `.npz` (as `numpy.savez` writes a PyTorch state_dict), by name; None
    as `max_bytes` for weights already stored (they passed the limit when registered)."""
    buf = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    with open_npz(buf, max_bytes) as npz:
        return {name: npz[name] for name in npz}


def check_npz(
    arch: Architecture, weights: WeightsFile | bytes, max_bytes: int = DEFAULT_MAX_BYTES
) -> None:
    """Check a weights file against a spec array by array, holding one array at a time."""
    wf = weights if isinstance(weights, WeightsFile) else WeightsFile.from_bytes(weights)
    with open_npz(wf.file, max_bytes) as npz:
        arch.check_weights(npz, keep=False)
    wf.file.seek(0)


# -- writing -------------------------------------------------------------------------------------


def dump_npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An uncompressed `.npz` of the arrays, in key order."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(arrays[k]) for k in sorted(arrays)})
    return buf.getvalue()
