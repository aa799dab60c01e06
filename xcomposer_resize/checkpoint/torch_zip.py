"""Where the tensors of a `pytorch_model.bin` lie in the file, found without torch.

`torch.save` writes a zip archive: `<prefix>/data.pkl` pickles the state dict, and each storage
is an uncompressed member `<prefix>/data/<key>`. `read_layout` unpickles data.pkl with an
unpickler that resolves only the few globals a plain state dict uses (OrderedDict, the tensor
rebuild functions, the storage types), each to a record of ours: nothing in the file can run
code, and torch is not imported, so the byte copy can start at once.

Anything outside that plain subset (other globals, views that are not contiguous, big-endian
archives, compressed members, a malformed zip) raises `Unsupported`; the caller then falls
back to `torch.load(weights_only=True)`, which reads or refuses it with its own checks.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dtypes import DTYPE_SIZES, nbytes_of
from .safetensors import TensorEntry

# torch storage class name → safetensors dtype
STORAGE_DTYPES = {
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "DoubleStorage": "F64",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
}
MAX_PICKLE_BYTES = 64 << 20  # a state dict of 100k tensors pickles to a few MB
LOCAL_HEADER = struct.Struct("<4s22sHH")  # signature, fixed fields, name length, extra length


class Unsupported(Exception):
    """The archive is outside the plain state-dict subset; torch.load must decide."""


@dataclass(frozen=True)
class _StorageType:
    dtype: str


@dataclass(frozen=True)
class _Storage:
    dtype: str
    key: str
    numel: int


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def read_layout(path: Path) -> list[TensorEntry]:
    """The tensors of the torch zip archive at `path`, in the pickle's order.

    Raises Unsupported for anything but a little-endian archive of a {name: contiguous tensor}
    dict whose storages are stored uncompressed inside the file.
    """
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
            size = os.fstat(f.fileno()).st_size
            prefix = _prefix(zf)
            if _read_member(zf, f"{prefix}/byteorder", 16) not in (None, b"little"):
                raise Unsupported("big-endian archive")
            state = _unpickle(_read_member(zf, f"{prefix}/data.pkl", MAX_PICKLE_BYTES) or b"")
            starts: dict[str, int] = {}
            out = []
            for name, t in state.items():
                key = t.storage.key
                if key not in starts:
                    starts[key] = _storage_start(f, zf, f"{prefix}/data/{key}", t.storage, size)
                start = starts[key] + t.offset * DTYPE_SIZES[t.storage.dtype]
                out.append(
                    TensorEntry(name, t.storage.dtype, t.shape, start, start + nbytes_of(t.storage.dtype, t.shape))
                )
            return out
    except Unsupported:
        raise
    except Exception as e:  # zipfile and pickle raise a dozen kinds on damaged input: torch decides
        raise Unsupported(f"{type(e).__name__}: {e}") from e


def _prefix(zf: zipfile.ZipFile) -> str:
    """The archive's top folder (`archive` for recent torch, the file's stem for older ones)."""
    tops = {n[: -len("/data.pkl")] for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1}
    if len(tops) != 1:
        raise Unsupported("not one <prefix>/data.pkl")
    return tops.pop()


def _read_member(zf: zipfile.ZipFile, name: str, limit: int) -> bytes | None:
    try:
        info = zf.getinfo(name)
    except KeyError:
        return None
    if info.file_size > limit:
        raise Unsupported(f"{name} is {info.file_size} bytes")
    return zf.read(info)


def _storage_start(f: io.BufferedReader, zf: zipfile.ZipFile, member: str, storage: _Storage, size: int) -> int:
    """Absolute offset of a storage member's bytes, checked to lie inside the file."""
    info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        raise Unsupported(f"{member} is compressed")
    if info.file_size < storage.numel * DTYPE_SIZES[storage.dtype]:
        raise Unsupported(f"{member} is shorter than its storage")
    f.seek(info.header_offset)
    signature, _, name_len, extra_len = LOCAL_HEADER.unpack(f.read(LOCAL_HEADER.size))
    if signature != b"PK\x03\x04":
        raise Unsupported(f"{member} has no local header")
    start: int = info.header_offset + LOCAL_HEADER.size + name_len + extra_len
    if start + info.file_size > size:
        raise Unsupported(f"{member} runs past the end of the file")
    return start


def _unpickle(data: bytes) -> dict[str, _Tensor]:
    state = _StateDictUnpickler(io.BytesIO(data)).load()
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, _Tensor) for k, v in state.items()):
        raise Unsupported("not a dict of named tensors")
    return state


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only the globals of a plain state dict, to records of ours; refuses the rest."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise Unsupported(f"global {module}.{name}")

    def persistent_load(self, pid: Any) -> _Storage:
        # ("storage", storage type, key, location, number of elements)
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise Unsupported("persistent id")
        kind, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(kind, _StorageType) or not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise Unsupported("storage record")
        if not key or "/" in key or key in (".", ".."):
            raise Unsupported("storage key")
        storage = self.storages.setdefault(key, _Storage(kind.dtype, key, numel))
        if storage != _Storage(kind.dtype, key, numel):
            raise Unsupported(f"storage {key} is typed twice")
        return storage


def _rebuild_tensor(
    storage: Any, offset: Any, shape: Any, stride: Any, requires_grad: Any = False, *rest: Any
) -> _Tensor:
    if not isinstance(storage, _Storage) or type(offset) is not int or offset < 0:
        raise Unsupported("tensor record")
    if not _ints(shape) or not _ints(stride) or len(shape) != len(stride):
        raise Unsupported("tensor shape")
    numel = math.prod(shape)
    if numel and offset + numel > storage.numel:
        raise Unsupported("tensor past the end of its storage")
    expected = 1
    for size, step in zip(reversed(shape), reversed(stride), strict=True):
        if size != 1 and step != expected:
            raise Unsupported("tensor is not contiguous")
        expected *= size
    return _Tensor(storage, offset, tuple(shape), tuple(stride))


def _rebuild_parameter(data: Any, requires_grad: Any = False, *rest: Any) -> Any:
    return data


def _ints(values: Any) -> bool:
    return isinstance(values, tuple) and all(type(v) is int and v >= 0 for v in values)
