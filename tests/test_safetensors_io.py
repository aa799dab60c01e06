"""The safetensors header reader and writer, byte by byte."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from xcomposer_resize.checkpoint.safetensors import FileRange, OutTensor, arrange, read_header, write_file
from xcomposer_resize.errors import InputError


def raw_file(path: Path, header: object, data: bytes = b"", length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def test_reads_what_the_safetensors_library_writes(tmp_path: Path) -> None:
    tensors = {
        "a": torch.randn(3, 4),
        "b": torch.arange(5),
        "c": torch.zeros(0, 2),
        "d": torch.ones((), dtype=torch.bfloat16),
    }
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"k": "v"})
    st = read_header(tmp_path / "x.safetensors")
    assert {t.name: (t.dtype, t.shape) for t in st.tensors} == {
        "a": ("F32", (3, 4)), "b": ("I64", (5,)), "c": ("F32", (0, 2)), "d": ("BF16", ()),
    }  # fmt: skip
    assert st.metadata == {"k": "v"}


def test_written_files_load_in_the_safetensors_library(tmp_path: Path) -> None:
    src = {"a": torch.randn(3, 4), "b": torch.arange(5), "z": torch.randn(2)}
    save_file(src, str(tmp_path / "src.safetensors"))
    st = read_header(tmp_path / "src.safetensors")
    by = {t.name: t for t in st.tensors}
    new = torch.randn(7, dtype=torch.float32)
    out = [
        OutTensor("a", "F32", (3, 4), FileRange(st.path, by["a"].start)),
        OutTensor("new", "F32", (7,), lambda: new.numpy().tobytes()),
        OutTensor("b", "I64", (5,), FileRange(st.path, by["b"].start)),
        OutTensor("z", "F32", (2,), FileRange(st.path, by["z"].start)),
    ]
    n = write_file(tmp_path / "out.safetensors", arrange(out))
    assert n == (tmp_path / "out.safetensors").stat().st_size == arrange(out).size
    back = load_file(str(tmp_path / "out.safetensors"))
    assert torch.equal(back["a"], src["a"]) and torch.equal(back["b"], src["b"]) and torch.equal(back["z"], src["z"])
    assert torch.equal(back["new"], new)
    head = (tmp_path / "out.safetensors").read_bytes()
    (hlen,) = struct.unpack("<Q", head[:8])
    assert hlen % 8 == 0
    assert json.loads(head[8 : 8 + hlen])["__metadata__"] == {"format": "pt"}


def test_computed_bytes_of_the_wrong_size_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected 8"):
        write_file(tmp_path / "o.safetensors", arrange([OutTensor("a", "F32", (2,), lambda: b"1234")]))


def good(tmp_path: Path) -> Path:
    save_file({"a": torch.randn(2, 2), "b": torch.randn(3)}, str(tmp_path / "good.safetensors"))
    return tmp_path / "good.safetensors"


HEADER_A = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"abc") and p, "shorter than the 8-byte header length"),
        (lambda p: raw_file(p, HEADER_A, b"\0" * 8, length=10**6), "but the file has only"),
        (lambda p: raw_file(p, HEADER_A, b"\0" * 8, length=200_000_000), "over the format's 100000000-byte cap"),
        (lambda p: raw_file(p, b"{not json", b""), "header is not JSON"),
        (lambda p: raw_file(p, b"\xff\xfe", b""), "header is not JSON"),
        (lambda p: raw_file(p, [1, 2], b""), "not a JSON object"),
        (
            lambda p: raw_file(p, {"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
            "unknown dtype 'F33'",
        ),
        (
            lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8),
            "invalid shape",
        ),
        (
            lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8),
            "invalid data_offsets",
        ),
        (
            lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}, b"\0" * 8),
            "points past the end",
        ),
        (
            lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
            "its shape and dtype need 12",
        ),
        (
            lambda p: raw_file(p, {**HEADER_A, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
            "overlaps",
        ),
        (
            lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
            "hole of 4 bytes",
        ),
        (lambda p: raw_file(p, HEADER_A, b"\0" * 12), "4 bytes follow the last tensor"),
        (
            lambda p: raw_file(p, {**HEADER_A, "__metadata__": {"a": 1}}, b"\0" * 8),
            "__metadata__ is not a map of strings",
        ),
        (lambda p: raw_file(p, {"a": "x"}, b""), "is not an object"),
    ],
)
def test_damaged_headers_are_refused_with_a_reason(tmp_path: Path, make: object, message: str) -> None:
    path = make(tmp_path / "model.safetensors")  # type: ignore[operator]
    with pytest.raises(InputError) as err:
        read_header(path)
    assert message in str(err.value)
    assert str(err.value).startswith("model.safetensors is not a valid safetensors file: ")


def test_truncated_file(tmp_path: Path) -> None:
    path = good(tmp_path)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(InputError, match="points past the end"):
        read_header(path)


def test_copy_falls_back_when_the_kernel_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from xcomposer_resize.checkpoint import safetensors as safetensors_io

    data = os.urandom(3 * safetensors_io.BUFFER_CHUNK + 123)
    (tmp_path / "src").write_bytes(b"xx" + data)

    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    seen: list[int] = []
    with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "wb") as dst:
        dst.write(b"y")
        dst.flush()
        safetensors_io.copy_range(src.fileno(), dst.fileno(), 2, 1, len(data), seen.append)
    assert (tmp_path / "dst").read_bytes() == b"y" + data
    assert sum(seen) == len(data) and len(seen) == 4


def test_a_source_that_shrinks_mid_copy_is_an_error(tmp_path: Path) -> None:
    from xcomposer_resize.checkpoint import safetensors as safetensors_io

    (tmp_path / "src").write_bytes(b"abc")
    with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "wb") as dst:
        with pytest.raises(InputError, match="became shorter"):
            safetensors_io.copy_range(src.fileno(), dst.fileno(), 0, 0, 10)
