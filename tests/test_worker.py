"""The torch worker process: a conversion in a fresh process never imports torch itself, and its
numbers are transformers' own, bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.test_convert import IDS, POS, tensors
from tests.test_interpolate import transformers_table
from xcomposer_resize.conversion.worker import Worker
from xcomposer_resize.errors import OutputError

CONVERT = """
import json, sys
from xcomposer_resize import resize
result = resize(sys.argv[1], [int(r) for r in sys.argv[2].split(",")])
print(json.dumps({"torch_imported": "torch" in sys.modules, "outputs": [o.path for o in result.outputs]}))
"""


def convert_in_fresh_process(src: Path, res: str, cwd: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CONVERT, str(src), res], capture_output=True, text=True, cwd=cwd, timeout=180
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize("fmt", ["safetensors", "bin", "sharded", "bf16", "fp16"])
def test_fresh_process_leaves_torch_to_the_worker_and_matches_transformers(
    make_ckpt: Any, tmp_path: Path, fmt: str
) -> None:
    kwargs: dict[str, Any] = (
        {"dtype": torch.bfloat16 if fmt == "bf16" else torch.float16} if fmt in ("bf16", "fp16") else {}
    )
    src = make_ckpt(fmt=fmt if fmt in ("bin", "sharded") else "safetensors", **kwargs)
    report = convert_in_fresh_process(src, "224,490", tmp_path)
    assert report["torch_imported"] is False, "the converting process imported torch"
    old = tensors(src)
    for path, grid in zip(report["outputs"], (16, 35), strict=True):
        new = tensors(Path(path))
        table = old[POS]
        want = transformers_table(table.float(), grid).to(table.dtype)
        assert torch.equal(new[POS], want), f"{fmt} at {grid}×{grid}"
        assert torch.equal(new[IDS], torch.arange(1 + grid * grid).reshape(1, -1))
        assert all(torch.equal(new[k], v) for k, v in old.items() if k not in (POS, IDS))


def request(grid: int, old: int = 2, width: int = 3, mode: str = "bicubic") -> dict[str, Any]:
    """A worker request for a [1 + old*old, width] float32 table resampled to grid×grid."""
    return {"dtype": "F32", "shape": [1 + old * old, width], "new_grid": [grid, grid], "old_grid": [old, old],
            "prefix": 1, "mode": mode, "antialias": False, "device": "cpu"}  # fmt: skip


def test_worker_reports_its_errors_as_one_line() -> None:
    worker = Worker.start()
    assert worker is not None
    with pytest.raises(
        OutputError,
        match=r"failed in the torch worker \(ValueError: unknown mode 'cubic'; .*\); check that torch imports",
    ):
        worker.resample(request(3, mode="cubic"), torch.zeros(5, 3).numpy().tobytes())
    worker.kill()
    assert worker.proc.poll() is not None


def test_a_worker_that_died_is_an_error_not_a_hang() -> None:
    worker = Worker.start()
    assert worker is not None
    worker.proc.kill()
    worker.proc.wait()
    with pytest.raises(OutputError, match="resampling the position table failed in the torch worker"):
        worker.resample(request(3), torch.zeros(5, 3).numpy().tobytes())
    worker.kill()


def test_worker_answers_several_requests_like_the_library(make_ckpt: Any) -> None:
    from xcomposer_resize.interpolate import resample_grid

    worker = Worker.start()
    assert worker is not None
    table = torch.randn(1 + 24 * 24, 8)
    for grid in (16, 35, 24 * 2):
        got = worker.resample(request(grid, old=24, width=8), table.numpy().tobytes())
        want = resample_grid(table, (grid, grid), 1, (24, 24))
        assert got == want.numpy().tobytes()
    worker.close()
    assert worker.proc.wait(timeout=30) == 0


def test_worker_ignores_a_torch_folder_in_the_current_directory(make_ckpt: Any, tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "torch").mkdir(parents=True)
    (work / "torch" / "__init__.py").write_text("raise ImportError('the wrong torch')\n")
    src = make_ckpt()
    report = convert_in_fresh_process(src, "490", work)
    assert report["torch_imported"] is False
    new = tensors(Path(report["outputs"][0]))
    assert torch.equal(new[POS], transformers_table(tensors(src)[POS], 35))


def test_tables_move_through_the_pipe_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipe moves at most 2 GiB per call: a table of exactly 2 GiB hung both processes until tables
    moved in chunks. Here the chunk is 7 bytes, so every path of the loops runs."""
    import io

    from xcomposer_resize.conversion import worker as worker

    monkeypatch.setattr(worker, "CHUNK", 7)
    data = bytes(range(256)) * 3
    sink = io.BytesIO()
    worker.send(sink, memoryview(data))
    assert sink.getvalue() == data
    assert worker.receive(io.BytesIO(data), len(data)) == data
    assert worker.receive(io.BytesIO(data[:10]), len(data)) == data[:10], "fewer at end of file"


def test_starting_a_worker_imports_little() -> None:
    """`xcr resize` starts the child first thing, through the console script's module and this one: what
    they import lies on the path every conversion waits for (on a copy-on-write file system, all of it).
    Not typing, json, tempfile or pathlib (~25 ms), nor the child's own modules (it imports them after
    torch). Measured in a python without site, whose own imports would hide some of these."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import xcomposer_resize.cli.entry, xcomposer_resize.conversion.worker\n"
        "print(sorted(set(sys.modules) - before))"
    )
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = set(json.loads(done.stdout.replace("'", '"')))
    assert sorted(m for m in imported if m.startswith("xcomposer_resize")) == [
        "xcomposer_resize",
        "xcomposer_resize.cli",
        "xcomposer_resize.cli.entry",
        "xcomposer_resize.conversion",
        "xcomposer_resize.conversion.worker",
        "xcomposer_resize.errors",
        "xcomposer_resize.version",
    ]
    assert not imported & {"typing", "json", "tempfile", "pathlib", "torch", "typer", "rich"}
