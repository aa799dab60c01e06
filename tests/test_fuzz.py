"""Property-based tests of the safetensors header reader: any bytes either parse into a
consistent plan or raise InputError. Never another exception, never a hang.

`make fuzz` runs many more examples (XCR_FUZZ_EXAMPLES) than CI does.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xcomposer_resize.checkpoint.safetensors import DTYPE_SIZES, nbytes_of, read_header
from xcomposer_resize.errors import InputError

EXAMPLES = int(os.environ.get("XCR_FUZZ_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        st_file = read_header(path)
    except InputError as e:
        assert str(e).startswith(path.name) and "\n" not in str(e)
        return
    # a consistent plan: tensors tile the data section exactly, each the size its shape needs
    (n,) = struct.unpack("<Q", data[:8])
    at = 8 + n
    for t in st_file.tensors:
        assert t.start == at and t.nbytes == nbytes_of(t.dtype, t.shape)
        at = t.end
    assert at == len(data)


@SETTINGS
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    check(tmp_path / "x.safetensors", data)


@SETTINGS
@given(body=st.binary(max_size=256), claimed=st.integers(min_value=0, max_value=2**64 - 1))
def test_arbitrary_header_length(tmp_path: Path, body: bytes, claimed: int) -> None:
    check(tmp_path / "x.safetensors", struct.pack("<Q", claimed) + body)


dims = st.lists(st.integers(min_value=0, max_value=6), max_size=3)
entry = st.fixed_dictionaries(
    {
        "dtype": st.one_of(st.sampled_from(sorted(DTYPE_SIZES)), st.text(max_size=4)),
        "shape": st.one_of(dims, st.just(None), st.lists(st.integers(-3, 3), max_size=2)),
        "data_offsets": st.one_of(st.lists(st.integers(-4, 400), min_size=0, max_size=3)),
    }
)


@SETTINGS
@given(
    header=st.dictionaries(st.text(max_size=6), entry, max_size=5),
    metadata=st.one_of(
        st.none(), st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3), st.integers()), max_size=2)
    ),
    data_len=st.integers(0, 400),
    pad=st.integers(0, 9),
)
def test_structured_headers(
    tmp_path: Path, header: dict[str, object], metadata: object, data_len: int, pad: int
) -> None:
    full: dict[str, object] = dict(header)
    if metadata is not None:
        full["__metadata__"] = metadata
    raw = json.dumps(full).encode() + b" " * pad
    check(tmp_path / "x.safetensors", struct.pack("<Q", len(raw)) + raw + b"\0" * data_len)


@SETTINGS
@given(
    shapes=st.lists(st.tuples(st.sampled_from(["F32", "BF16", "I64", "U8"]), dims), min_size=1, max_size=4),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 64),
)
def test_mutated_valid_files(
    tmp_path: Path, shapes: list[tuple[str, list[int]]], flips: list[tuple[int, int]], cut: int
) -> None:
    header: dict[str, object] = {}
    at = 0
    for i, (dtype, shape) in enumerate(shapes):
        size = nbytes_of(dtype, shape)
        header[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + size]}
        at += size
    raw = json.dumps(header).encode()
    data = bytearray(struct.pack("<Q", len(raw)) + raw + bytes(at))
    check(tmp_path / "valid.safetensors", bytes(data))  # the unmutated file parses
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    check(tmp_path / "x.safetensors", bytes(data[: max(0, len(data) - cut)]))
