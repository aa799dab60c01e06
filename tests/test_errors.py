"""Bad input, faults and hostile files: one clear line, the right exit code, nothing left behind."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import snapshot
from tests.test_cli import one_error_line


def fails_cleanly(
    r: Any, code: int, fragment: str, tmp_path: Path, src: Path | None = None, before: dict[str, bytes] | None = None
) -> str:
    assert r.code == code, (r.code, r.err)
    line = one_error_line(r.err)
    assert fragment in line, line
    assert not (tmp_path / "out").exists()
    assert not [p.name for p in tmp_path.rglob("*") if ".xcr-" in p.name]
    if src is not None and before is not None:
        assert snapshot(src) == before
    return line


def convert(xcr: Any, src: Path, tmp_path: Path, *extra: str) -> Any:
    return xcr("resize", "--model", src, "--res", "490", "--out", tmp_path / "out", *extra)


# ------------------------------------------------------------------ bad input


def test_unreadable_config(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    (src / "config.json").unlink()
    (src / "config.json").mkdir()  # unreadable as a file, even for root
    fails_cleanly(
        convert(xcr, src, tmp_path), 2, "config.json is a folder, not a file; fix or re-download it", tmp_path
    )


def test_config_not_json(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    (src / "config.json").write_text("{oops")
    fails_cleanly(convert(xcr, src, tmp_path), 2, "config.json is not valid JSON", tmp_path)


def test_position_table_not_prefix_plus_square(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    src = make_ckpt()
    sd = load_file(str(src / "model.safetensors"))
    sd["vision_model.embeddings.position_embedding.weight"] = torch.randn(578, 32)
    save_file(sd, str(src / "model.safetensors"))
    fails_cleanly(convert(xcr, src, tmp_path), 2, "578 rows, which is not 1 prefix row(s) + a square grid", tmp_path)


def test_clip_config_but_no_vision_tensor(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = make_ckpt()
    save_file({"model.layers.0.weight": torch.zeros(2)}, str(src / "model.safetensors"))
    line = fails_cleanly(convert(xcr, src, tmp_path), 2, "no vision position table", tmp_path)
    assert "model.layers.0.weight" in line


def test_damaged_safetensors_in_a_folder(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[: len(data) // 2])
    before = snapshot(src)
    fails_cleanly(
        convert(xcr, src, tmp_path), 2, "model.safetensors is not a valid safetensors file", tmp_path, src, before
    )


def write_index(src: Path, mutate: Any) -> None:
    path = src / "model.safetensors.index.json"
    index = json.loads(path.read_text())
    mutate(index["weight_map"])
    path.write_text(json.dumps(index))


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda wm: wm.update({next(iter(wm)): "model-00009-of-00009.safetensors"}), "no such file"),
        (lambda wm: wm.update({next(iter(wm)): "/etc/passwd"}), "must be plain file names"),
        (lambda wm: wm.update({next(iter(wm)): "../model-00001-of-00003.safetensors"}), "must be plain file names"),
        (lambda wm: wm.update({next(iter(wm)): "sub/model.safetensors"}), "must be plain file names"),
        (lambda wm: wm.update({"ghost.weight": "model-00001-of-00003.safetensors"}), "lists 1 tensors no shard holds"),
        (lambda wm: wm.pop(next(iter(wm))), "does not map it there"),
    ],
)
def test_bad_shard_index(xcr: Any, make_ckpt: Any, tmp_path: Path, mutate: Any, fragment: str) -> None:
    src = make_ckpt(fmt="sharded")
    write_index(src, mutate)
    fails_cleanly(convert(xcr, src, tmp_path), 2, fragment, tmp_path)


def test_tensor_stored_in_two_shards(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    src = make_ckpt(fmt="sharded")
    one = load_file(str(src / "model-00001-of-00003.safetensors"))
    two = load_file(str(src / "model-00002-of-00003.safetensors"))
    name = next(iter(one))
    save_file({**two, name: one[name]}, str(src / "model-00002-of-00003.safetensors"))
    fails_cleanly(convert(xcr, src, tmp_path), 2, f"tensor '{name}' is stored twice", tmp_path)


def test_bin_that_is_not_a_torch_archive(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="bin")
    (src / "pytorch_model.bin").write_bytes(b"<html>404 not found</html>")
    fails_cleanly(convert(xcr, src, tmp_path), 2, "pytorch_model.bin is not a PyTorch checkpoint", tmp_path)


def test_truncated_torch_archive(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="bin")
    data = (src / "pytorch_model.bin").read_bytes()
    (src / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    fails_cleanly(convert(xcr, src, tmp_path), 2, "pytorch_model.bin", tmp_path)


class Hostile:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [False, True])
def test_hostile_pickle_runs_no_code(xcr: Any, make_ckpt: Any, tmp_path: Path, legacy: bool) -> None:
    src = make_ckpt(fmt="bin")
    marker = tmp_path / "pwned"
    sd: dict[str, Any] = dict(torch.load(src / "pytorch_model.bin", weights_only=True))
    sd["evil"] = Hostile(str(marker))
    torch.save(sd, src / "pytorch_model.bin", _use_new_zipfile_serialization=not legacy)
    line = fails_cleanly(convert(xcr, src, tmp_path), 2, "the file may be unsafe", tmp_path)
    assert "weights_only" in line
    assert not marker.exists(), "the pickle's code must never run"
    # the same file does run code when unpickled without weights_only: the test is real
    if not legacy:
        torch.load(src / "pytorch_model.bin", weights_only=False)
        assert marker.exists()


def test_plain_pickle_that_is_not_a_state_dict(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="bin")
    torch.save([torch.zeros(1)], src / "pytorch_model.bin")
    fails_cleanly(convert(xcr, src, tmp_path), 2, "is not a state dict of named tensors", tmp_path)


def test_output_parent_is_a_file(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    r = xcr("resize", "--model", make_ckpt(), "--res", "490", "--out", tmp_path / "afile" / "out")
    assert r.code == 2 and f"{tmp_path / 'afile'} is not a folder; choose another --out" in one_error_line(r.err)


# ------------------------------------------------------------------ faults


def enospc_after(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """Make the disk 'fill up' once `limit` bytes of tensor data are written."""
    from xcomposer_resize.checkpoint import safetensors as safetensors_io

    real = safetensors_io.copy_range
    written = {"n": 0}

    def copy(src: int, dst: int, so: int, do: int, length: int, *rest: Any) -> None:
        written["n"] += length
        if written["n"] > limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst, so, do, length, *rest)

    monkeypatch.setattr(safetensors_io, "copy_range", copy)


def test_disk_full_mid_write(xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_ckpt(fmt="sharded")
    before = snapshot(src)
    enospc_after(monkeypatch, 1000)
    r = convert(xcr, src, tmp_path)
    fails_cleanly(r, 1, "no space left on the device while writing", tmp_path, src, before)


def test_force_keeps_the_old_output_when_the_new_one_fails(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_ckpt()
    assert convert(xcr, src, tmp_path, "--quiet").code == 0
    old = snapshot(tmp_path / "out")
    enospc_after(monkeypatch, 1000)
    r = convert(xcr, src, tmp_path, "--force")
    assert r.code == 1 and "no space left" in one_error_line(r.err)
    assert snapshot(tmp_path / "out") == old
    assert not [p.name for p in tmp_path.iterdir() if ".xcr-" in p.name]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_conversion(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int, code: int
) -> None:
    from xcomposer_resize.checkpoint import safetensors as safetensors_io

    src = make_ckpt(fmt="sharded")
    real = safetensors_io.copy_range

    def copy(*args: Any, **kwargs: Any) -> None:
        assert [p for p in tmp_path.iterdir() if ".xcr-tmp-" in p.name], "the temporary folder exists mid-write"
        os.kill(os.getpid(), sig)  # a real signal, delivered to this process mid-copy
        real(*args, **kwargs)

    monkeypatch.setattr(safetensors_io, "copy_range", copy)
    r = convert(xcr, src, tmp_path)
    assert r.code == code
    assert "nothing was written" in one_error_line(r.err)
    assert not (tmp_path / "out").exists()
    assert not [p.name for p in tmp_path.iterdir() if ".xcr-" in p.name]


SLOW_XCR = """
import sys, time
from xcomposer_resize.checkpoint import safetensors as safetensors_io
real = safetensors_io.copy_range
def slow(*a, **k):
    print("copying", flush=True)
    time.sleep(60)
    real(*a, **k)
safetensors_io.copy_range = slow
from xcomposer_resize.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_leaves_nothing_at_the_output_and_the_next_run_cleans_up(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    out = tmp_path / "out"
    args = ["resize", "--model", str(src), "--res", "490", "--out", str(out)]
    p = subprocess.Popen(
        [sys.executable, "-c", SLOW_XCR, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "copying"
    p.kill()
    p.wait(timeout=30)
    assert not out.exists(), "a killed run leaves nothing at the output path"
    stale = [x for x in tmp_path.iterdir() if ".xcr-tmp-" in x.name]
    assert len(stale) == 1
    done = subprocess.run(
        [sys.executable, "-m", "xcomposer_resize", *args, "--quiet"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (out / "model.safetensors").is_file()
    assert not [x for x in tmp_path.iterdir() if ".xcr-" in x.name], "stale temporaries of dead runs are removed"


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def ended(pid: int, timeout: float = 30) -> bool:
    """True once `pid` is gone or a zombie."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_the_torch_worker_ends_with_its_parent(make_ckpt: Any, tmp_path: Path, sig: int, code: int) -> None:
    out = tmp_path / "out"
    args = ["resize", "--model", str(make_ckpt()), "--res", "490", "--out", str(out)]
    p = subprocess.Popen(
        [sys.executable, "-c", SLOW_XCR, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "copying"
    workers = child_pids(p.pid)
    assert len(workers) == 1, "one worker process imports torch while the parent copies"
    p.send_signal(sig)
    assert p.wait(timeout=60) == code
    assert ended(workers[0]), "the worker outlived its parent"
    assert not out.exists()


def test_a_live_runs_temporary_is_left_alone(make_ckpt: Any, tmp_path: Path, xcr: Any) -> None:
    live = tmp_path / f".out.xcr-tmp-{os.getppid()}"
    live.mkdir()
    assert convert(xcr, make_ckpt(), tmp_path, "--quiet").code == 0
    assert live.exists()


def test_unexpected_errors_are_one_line_too(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xcomposer_resize.conversion import write as convert_module

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(convert_module, "_copy", boom)
    r = convert(xcr, make_ckpt(), tmp_path)
    assert r.code == 1
    assert "unexpected RuntimeError: kaboom; rerun with XCR_DEBUG=1" in one_error_line(r.err)
    assert not (tmp_path / "out").exists()
    assert not [p.name for p in tmp_path.iterdir() if ".xcr-" in p.name]


def test_output_that_is_a_device(xcr: Any, make_ckpt: Any) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", "490", "--out", "/dev/null", "--force")
    assert r.code == 2 and "exists and is neither a folder nor a file" in one_error_line(r.err)


def test_output_where_no_folder_can_be_made(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xcomposer_resize.conversion.land import Staging

    def refuse(out: Path) -> Staging:
        raise OSError(errno.EROFS, "Read-only file system", str(out.parent))

    monkeypatch.setattr(Staging, "create", classmethod(lambda cls, out: refuse(out)))
    r = xcr("resize", "--model", make_ckpt(), "--res", "490", "--out", tmp_path / "out")
    assert r.code == 1 and "Read-only file system; choose another --out" in one_error_line(r.err)
    assert not (tmp_path / "out").exists()
