"""The torch-free reader of pytorch_model.bin: torch itself is the oracle for every byte it
locates, and everything outside a plain state dict is handed back to torch.load."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_errors import Hostile
from xcomposer_resize.checkpoint.safetensors import TensorEntry
from xcomposer_resize.checkpoint.torch_zip import Unsupported, read_layout

EXAMPLES = int(os.environ.get("XCR_FUZZ_EXAMPLES", "300"))


def state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 4, generator=g)
    return {
        "f32": torch.randn(3, 5, generator=g),
        "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "f64": torch.randn(2, generator=g).double(),
        "i64": torch.arange(9).reshape(1, 9),
        "i32": torch.arange(4, dtype=torch.int32),
        "bool": torch.tensor([True, False, True]),
        "u8": torch.arange(5, dtype=torch.uint8),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "head": base[:2],  # views sharing one storage, at different offsets
        "tail": base[3:],
        "param": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
    }


def raw(path: Path, t: TensorEntry) -> bytes:
    with open(path, "rb") as f:
        f.seek(t.start)
        return f.read(t.nbytes)


def as_bytes(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def test_every_tensor_is_located_where_torch_finds_it(tmp_path: Path) -> None:
    sd = state_dict()
    torch.save(sd, tmp_path / "x.bin")
    layout = read_layout(tmp_path / "x.bin")
    assert [t.name for t in layout] == list(sd)
    loaded = torch.load(tmp_path / "x.bin", weights_only=True)
    dtypes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
              torch.int64: "I64", torch.int32: "I32", torch.bool: "BOOL", torch.uint8: "U8"}  # fmt: skip
    for t in layout:
        assert (t.dtype, t.shape) == (dtypes[loaded[t.name].dtype], tuple(loaded[t.name].shape)), t.name
        assert raw(tmp_path / "x.bin", t) == as_bytes(loaded[t.name]), t.name


def test_reads_without_importing_torch(tmp_path: Path) -> None:
    torch.save(state_dict(), tmp_path / "x.bin")
    code = (
        "import sys; from pathlib import Path; from xcomposer_resize.checkpoint.torch_zip import read_layout; "
        f"n = len(read_layout(Path({str(tmp_path / 'x.bin')!r}))); "
        "assert 'torch' not in sys.modules, 'torch was imported'; print(n)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(state_dict()))


def test_other_globals_are_refused_without_running_them(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"w": torch.zeros(2), "evil": Hostile(str(marker))}, tmp_path / "x.bin")
    with pytest.raises(Unsupported, match="global"):
        read_layout(tmp_path / "x.bin")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        ({"t": torch.randn(3, 4).t()}, "not contiguous"),
        ([torch.zeros(1)], "not a dict of named tensors"),
        ({"n": 3}, "not a dict of named tensors"),
    ],
)
def test_what_is_not_a_plain_state_dict_goes_to_torch(tmp_path: Path, obj: Any, why: str) -> None:
    torch.save(obj, tmp_path / "x.bin")
    with pytest.raises(Unsupported, match=why):
        read_layout(tmp_path / "x.bin")


def rewrite(src: Path, dst: Path, change: Any) -> None:
    """Copy a zip member by member, letting `change(name, data)` return (data, compression)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data, method = change(info.filename, zin.read(info))
            zout.writestr(info.filename, data, compress_type=method)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda n, d: (d, zipfile.ZIP_DEFLATED if "/data/" in n else zipfile.ZIP_STORED), "compressed"),
        (lambda n, d: (b"big" if n.endswith("byteorder") else d, zipfile.ZIP_STORED), "big-endian"),
        (lambda n, d: (d[:2] if "/data/" in n else d, zipfile.ZIP_STORED), "shorter than its storage"),
    ],
)
def test_archives_it_cannot_copy_from_go_to_torch(tmp_path: Path, change: Any, why: str) -> None:
    torch.save({"w": torch.randn(4, 4)}, tmp_path / "x.bin")
    rewrite(tmp_path / "x.bin", tmp_path / "y.bin", change)
    with pytest.raises(Unsupported, match=why):
        read_layout(tmp_path / "y.bin")


def test_legacy_and_damaged_files_go_to_torch(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(2)}, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    torch.save({"w": torch.zeros(2)}, tmp_path / "x.bin")
    data = (tmp_path / "x.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    for name in ("legacy.bin", "cut.bin"):
        with pytest.raises(Unsupported):
            read_layout(tmp_path / name)


SMALL = None


def small_archive() -> bytes:
    global SMALL
    if SMALL is None:
        import io

        buf = io.BytesIO()
        torch.save({"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.float16)}, buf)
        SMALL = buf.getvalue()
    return SMALL


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_archives_never_escape_the_file(tmp_path: Path, data: st.DataObject) -> None:
    """Flipped bytes anywhere: either Unsupported, or ranges that lie inside the file."""
    blob = bytearray(small_archive())
    for _ in range(data.draw(st.integers(1, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(blob))
    try:
        layout = read_layout(path)
    except Unsupported:
        return
    for t in layout:
        assert 0 <= t.start and t.start + t.nbytes <= len(blob)
