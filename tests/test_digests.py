"""Content digests of weight files: the same whether hashed as the file is written, in any order, or
read back afterwards, and equal to the definition (SHA-256 of the blocks' SHA-256s) computed here."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from xcomposer_resize.checkpoint.safetensors import FileRange, OutTensor, arrange, read_header, write_file
from xcomposer_resize.conversion import digests


def by_definition(path: Path, block: int) -> str:
    data = path.read_bytes()
    blocks = [hashlib.sha256(data[i : i + block]).digest() for i in range(0, max(len(data), 1), block)]
    return "sha256x64m:" + hashlib.sha256(b"".join(blocks)).hexdigest()


@pytest.mark.parametrize("block", [4096, 5000, 1 << 20])
def test_a_file_hashed_while_written_has_the_digest_it_reads_back_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(digests, "BLOCK", block)
    monkeypatch.setattr(digests, "READ", 1000)  # reads that do not line up with the blocks
    torch.manual_seed(0)
    src = {f"t{i:02d}": torch.randn(100 + 37 * i) for i in range(30)}
    save_file(src, str(tmp_path / "src.safetensors"))
    entries = read_header(tmp_path / "src.safetensors").tensors
    table = torch.randn(999)
    tensors = [
        OutTensor(t.name, t.dtype, t.shape, FileRange(tmp_path / "src.safetensors", t.start))
        if t.name != "t15"  # a computed tensor in the middle: written last, after its neighbours
        else OutTensor("t15", "F32", (999,), lambda: table.numpy().tobytes())
        for t in entries
    ]
    out = tmp_path / "out.safetensors"
    with digests.pool() as pool:
        hashing = digests.WriteDigest(out, arrange(tensors).size, pool)
        write_file(out, arrange(tensors), on_written=hashing.written)
        got = hashing.result()
    assert got == digests.file_digest(out) == by_definition(out, block)
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 1
    out.write_bytes(data)
    assert digests.file_digest(out) != got


def test_a_file_never_reported_whole_has_no_digest(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    with digests.pool() as pool:
        hashing = digests.WriteDigest(path, 10, pool)
        hashing.written(0, 4)
        with pytest.raises(AssertionError, match="never reported written"):
            hashing.result()
