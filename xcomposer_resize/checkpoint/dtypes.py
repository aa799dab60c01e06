"""Dtypes: safetensors' names, their sizes, the words users and configs say, torch's; tensors to
bytes and back. torch is imported only when a function here that needs it is called.

Small on purpose: the torch worker imports it (with interpolate.py) before torch, on the path every
conversion waits for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    import torch

DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
Buffer = bytes | bytearray | memoryview
DTYPE_WORDS = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
}  # as users and configs say them
WORD_DTYPES = {word: dtype for dtype, word in DTYPE_WORDS.items()}
FLOAT_DTYPES = tuple(DTYPE_WORDS)


def nbytes_of(dtype: str, shape: Iterable[int]) -> int:
    """Bytes of a tensor of `dtype` and `shape`."""
    return DTYPE_SIZES[dtype] * math.prod(shape)


# torch <-> safetensors dtype names; torch is imported only when these are called.
_TORCH_NAMES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "F16": "float16",
    "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32", "I64": "int64",
    "U64": "uint64", "F64": "float64", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn",
}  # fmt: skip


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a safetensors dtype name."""
    import torch

    result: torch.dtype = getattr(torch, _TORCH_NAMES[dtype])
    return result


def st_dtype(dtype: torch.dtype) -> str:
    """The safetensors dtype name of a torch dtype."""
    name = str(dtype).removeprefix("torch.")
    for st, tn in _TORCH_NAMES.items():
        if tn == name:
            return st
    raise InputError(f"tensors of dtype {name} cannot be stored in safetensors")


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """A zero-copy byte view of a contiguous CPU tensor (keep `t` alive while it is used)."""
    import ctypes

    t = t.contiguous()
    n = t.numel() * t.element_size()
    if n == 0:
        return memoryview(b"")
    array = (ctypes.c_ubyte * n).from_address(t.data_ptr())
    array._owner = t  # type: ignore[attr-defined]  # the view keeps the array, the array keeps t
    return memoryview(array).cast("B")


def tensor_from_bytes(data: Buffer, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor over `data` (copied into a writable buffer when needed)."""
    import torch

    buf = data if isinstance(data, bytearray) else bytearray(data)
    if not buf:
        return torch.empty(shape, dtype=torch_dtype(dtype))
    return torch.frombuffer(buf, dtype=torch_dtype(dtype)).reshape(shape)
