"""Copied bytes keep their place: the layout rule that lets copy-on-write file systems share blocks,
and, where an XFS or btrfs image can be mounted here, that an output shares its blocks with the source
and is byte for byte what the same run writes on any other file system."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tests import builders
from xcomposer_resize import resize
from xcomposer_resize.checkpoint.extents import shared_bytes
from xcomposer_resize.checkpoint.safetensors import (
    ALIGN,
    ANCHOR_BYTES,
    FileRange,
    OutTensor,
    arrange,
    read_header,
    write_file,
)

POS = "vision_model.embeddings.position_embedding.weight"


def source_file(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def planned(path: Path, new: dict[str, torch.Tensor]) -> list[OutTensor]:
    """Every tensor of the source file at `path` copied, but those in `new` (computed)."""
    out = []
    for t in read_header(path).tensors:
        if t.name in new:
            data = new[t.name]
            out.append(OutTensor(t.name, t.dtype, tuple(data.shape), lambda d=data: d.numpy().tobytes()))
        else:
            out.append(OutTensor(t.name, t.dtype, t.shape, FileRange(path, t.start)))
    return out


def misaligned(src: Path, out: Path, skip: set[str]) -> list[str]:
    """The large tensors of `out` that do not sit at their source offset modulo ALIGN (small ones may
    move to realign the rest)."""
    theirs = {t.name: t.start for t in read_header(src).tensors}
    return [
        t.name
        for t in read_header(out).tensors
        if t.name not in skip and t.nbytes >= ANCHOR_BYTES and (t.start - theirs[t.name]) % ALIGN
    ]


def a_table_in_the_middle(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A file with runs of copied tensors on both sides of a table whose size changes by 512 mod 4096
    (SigLIP's 1152-wide rows), small tensors at both ends, as the safetensors library orders them."""
    g = torch.Generator().manual_seed(0)
    tensors = {
        "a.ids": torch.arange(77),
        "b.small": torch.randn(3, generator=g),
        "c.big": torch.randn(300, 1000, generator=g),
        "d.table": torch.randn(729, 1152, generator=g),
        "e.big": torch.randn(500, 1000, generator=g),
        "f.bias": torch.randn(1152, generator=g),
        "g.norm": torch.randn(1001, generator=g),
        "h.tiny": torch.randn(7, generator=g),
    }
    return source_file(tmp_path / "src.safetensors", tensors), tensors, {"d.table": torch.randn(1226, 1152)}


def test_copied_tensors_on_both_sides_of_the_table_keep_their_offsets(tmp_path: Path) -> None:
    src, tensors, new = a_table_in_the_middle(tmp_path)
    out = tmp_path / "out.safetensors"
    size = write_file(out, arrange(planned(src, new)))
    assert size == out.stat().st_size == arrange(planned(src, new)).size
    assert misaligned(src, out, skip=set(new)) == []  # read_header proves no hole and no overlap
    with safe_open(str(out), "pt") as f:
        assert sorted(f.keys()) == sorted(tensors)
        for name in tensors:
            assert torch.equal(f.get_tensor(name), new.get(name, tensors[name])), name


def test_the_layout_depends_only_on_the_tensors(tmp_path: Path) -> None:
    src, _, new = a_table_in_the_middle(tmp_path)
    first, second = arrange(planned(src, new)), arrange(planned(src, new))
    assert [t.name for t in first.tensors] == [t.name for t in second.tensors] and first.header == second.header
    write_file(tmp_path / "a.safetensors", arrange(planned(src, new)))
    write_file(tmp_path / "b.safetensors", arrange(planned(src, new)))
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_an_unchanged_file_is_the_source_byte_for_byte(tmp_path: Path) -> None:
    src, _, _ = a_table_in_the_middle(tmp_path)
    write_file(tmp_path / "out.safetensors", arrange(planned(src, {})))
    assert (tmp_path / "out.safetensors").read_bytes() == src.read_bytes()


def test_a_header_unlike_the_source_is_padded_to_keep_the_offsets(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    tensors = {"a": torch.randn(100_000, generator=g), "b": torch.randn(3, generator=g)}
    save_file(tensors, str(tmp_path / "src.safetensors"), metadata={"format": "pt", "other": "x" * 5000})
    out = tmp_path / "out.safetensors"
    write_file(out, arrange(planned(tmp_path / "src.safetensors", {})))
    assert misaligned(tmp_path / "src.safetensors", out, skip=set()) == []
    assert read_header(out).metadata == {"format": "pt"}
    with safe_open(str(out), "pt") as f:
        assert all(torch.equal(f.get_tensor(n), tensors[n]) for n in tensors)


def test_without_large_copied_runs_the_plan_order_is_kept(tmp_path: Path) -> None:
    src, tensors, _ = a_table_in_the_middle(tmp_path)
    computed = {n: t for n, t in tensors.items() if n != "a.ids"}  # as a --dtype cast: nearly nothing copied
    layout = arrange(planned(src, computed))
    assert [t.name for t in layout.tensors] == list(tensors)
    assert len(layout.header) % 8 == 0


# ------------------------------------------------------------------ on a copy-on-write file system


def wide_checkpoint(folder: Path, monkeypatch: pytest.MonkeyPatch, fmt: str = "safetensors") -> Path:
    """A CLIP checkpoint whose vision tower is 256 wide: tensors of many blocks, and a table whose
    size changes by a part of a block (577 → 1226 rows of 1 KiB)."""
    monkeypatch.setitem(builders.VISION, "hidden_size", 256)
    monkeypatch.setitem(builders.VISION, "intermediate_size", 1024)
    return builders.build(folder, fmt=fmt)


@pytest.fixture(params=["xfs", "btrfs"])
def cow_folder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A folder on a freshly made, loop-mounted XFS (reflink) or btrfs; skipped, saying why, where
    that cannot be done here (not root, no loop devices, no mkfs)."""
    kind = str(request.param)
    mkfs = shutil.which(f"mkfs.{kind}")
    if os.geteuid() != 0:
        pytest.skip(f"mounting a {kind} image needs root")
    if mkfs is None:
        pytest.skip(f"mkfs.{kind} is not installed (apt-get install {'xfsprogs' if kind == 'xfs' else 'btrfs-progs'})")
    image, mnt = tmp_path / f"{kind}.img", tmp_path / "mnt"
    with open(image, "wb") as f:
        f.truncate(512 << 20)
    mnt.mkdir()
    args = [mkfs, "-q", *(["-m", "reflink=1"] if kind == "xfs" else []), str(image)]
    made = subprocess.run(args, capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"mkfs.{kind} failed: {made.stderr.strip()[:200]}")
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {kind} image here: {mounted.stderr.strip()[:200]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def free(path: Path) -> int:
    os.sync()
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def weight_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name.endswith(".safetensors")}


@pytest.mark.parametrize("fmt", ["safetensors", "sharded"])
def test_an_output_shares_its_blocks_with_the_source(
    cow_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    src = wide_checkpoint(cow_folder / "src", monkeypatch, fmt)
    plain = resize(wide_checkpoint(tmp_path / "src", monkeypatch, fmt), 490, tmp_path / "out")
    before = free(cow_folder)
    result = resize(src, 490, cow_folder / "out")
    used = before - free(cow_folder)
    weights = sum(p.stat().st_size for p in (cow_folder / "out").glob("*.safetensors"))
    assert result.bytes_shared >= 0.8 * weights, (result.bytes_shared, weights)
    assert result.bytes_shared == sum(shared_bytes(p) for p in (cow_folder / "out").iterdir())
    assert plain.bytes_shared == 0 or os.statvfs(tmp_path).f_fsid == os.statvfs(cow_folder).f_fsid
    assert used < 0.3 * weights, (used, weights)  # the table, the header blocks, metadata
    assert weight_files(cow_folder / "out") == weight_files(tmp_path / "out")
    assert json.loads((cow_folder / "out" / "config.json").read_text()) == json.loads(
        (tmp_path / "out" / "config.json").read_text()
    )
    assert resize(src, 490, cow_folder / "out").outputs[0].up_to_date


def test_a_flipped_byte_in_a_shared_block_is_not_up_to_date(cow_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = wide_checkpoint(cow_folder / "src", monkeypatch)
    out = cow_folder / "out"
    resize(src, 490, out)
    entry = max((t for t in read_header(out / "model.safetensors").tensors if t.name != POS), key=lambda t: t.nbytes)
    with open(out / "model.safetensors", "r+b") as f:  # the write unshares that block only
        f.seek(entry.start + entry.nbytes // 2)
        byte = f.read(1)
        f.seek(entry.start + entry.nbytes // 2)
        f.write(bytes([byte[0] ^ 1]))
    from xcomposer_resize.errors import UsageError

    with pytest.raises(UsageError, match=f"its bytes of {entry.name} differ from the source's"):
        resize(src, 490, out)
    assert (src / "model.safetensors").read_bytes() != (out / "model.safetensors").read_bytes()


def test_the_summary_says_what_was_shared(cow_folder: Path, monkeypatch: pytest.MonkeyPatch, xcr: Any) -> None:
    src = wide_checkpoint(cow_folder / "src", monkeypatch)
    r = xcr("resize", "--model", src, "--res", 490, "--out", cow_folder / "out")
    assert r.code == 0 and "shared with the source" in r.out, r.out


def test_an_edited_header_is_not_up_to_date(tmp_path: Path, make_ckpt: Any) -> None:
    src = make_ckpt()
    out = tmp_path / "out"
    resize(src, 490, out)
    data = (out / "model.safetensors").read_bytes()
    assert data.count(b'"format":"pt"') == 1
    (out / "model.safetensors").write_bytes(data.replace(b'"format":"pt"', b'"format":"pu"'))
    from xcomposer_resize.errors import UsageError

    with pytest.raises(UsageError, match=r"model.safetensors was changed since it was written \(its header differs\)"):
        resize(src, 490, out)
