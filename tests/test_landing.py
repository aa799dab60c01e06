"""Where the output lands: atomic against other runs, never onto the current folder, through
symbolic links, never replacing what is not a checkpoint, no more readable than the source,
within the file system's name limits, and clean after interruptions."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import snapshot
from tests.test_cli import one_error_line
from tests.test_errors import SLOW_XCR

# xcr that announces the copy and then waits for a go file, so two runs can be made to overlap
WAITING_XCR = """
import sys, time, os
from xcomposer_resize.checkpoint import safetensors as safetensors_io
real = safetensors_io.copy_range
go = os.environ["XCR_TEST_GO"]
announced = []
def wait(*a, **k):
    if not announced:
        announced.append(print("copying", flush=True))
    while not os.path.exists(go):
        time.sleep(0.02)
    return real(*a, **k)
safetensors_io.copy_range = wait
from xcomposer_resize.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def litter(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".xcr-" in p.name]


def lost(out: str, err: str) -> None:
    """A --json run that lost the race prints one object saying it failed, with its error line, and
    never an output's object (which would name a folder holding someone else's output)."""
    (line,) = out.splitlines()
    data = json.loads(line)
    assert data["ok"] is False and data["exit_code"] == 1 and "outputs" not in data, data
    assert data["error"] == one_error_line(err).removeprefix("xcr: error: ")


# ------------------------------------------------------------------ two runs at once


def test_two_runs_into_one_out_one_wins_the_other_says_so(make_ckpt: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    go = tmp_path / "go"
    runs = []
    for seed in (1, 2):
        src = make_ckpt(f"src-{seed}", seed=seed)
        args = ["resize", "--model", str(src), "--res", "490", "--out", str(out), "--json"]
        p = subprocess.Popen(
            [sys.executable, "-c", WAITING_XCR, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "XCR_TEST_GO": str(go)},
        )  # fmt: skip
        assert p.stdout is not None and p.stdout.readline().strip() == "copying"
        runs.append((seed, p))
    go.write_text("")  # both checked --out before either landed: now let them race
    results = [(seed, p.wait(timeout=120), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "")
               for seed, p in runs]  # fmt: skip
    codes = sorted(code for _, code, _, _ in results)
    assert codes == [0, 1], results
    winner = next(seed for seed, code, _, _ in results if code == 0)
    loser = next(r for r in results if r[1] == 1)
    lost(loser[2], loser[3])
    assert f"{out} was created or changed by someone else while this run was writing" in one_error_line(loser[3])
    winner_json = json.loads(next(o for _, code, o, _ in results if code == 0))
    assert winner_json["outputs"][0]["path"] == str(out)
    assert f"src-{winner}" in (out / "README.md").read_text(), "the output is the winner's, whole"
    assert not litter(tmp_path)


def test_an_out_taken_at_landing_time_is_left_alone(
    xcr: Any, make_ckpt: Any, tmp_path: Path, about_to_land: Any
) -> None:
    out = tmp_path / "out"

    def someone_else_lands(tmp: Path, final: Path) -> None:
        out.mkdir()
        (out / "theirs.txt").write_text("another run's output")

    about_to_land(someone_else_lands)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", out, "--json")
    assert r.code == 1
    lost(r.out, r.err)
    assert "was created or changed by someone else" in one_error_line(r.err)
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    assert not litter(tmp_path)


# ------------------------------------------------------------------ the current folder, mount points


@pytest.mark.parametrize("given", [".", "./", "..", "{cwd}"])
def test_the_current_folder_is_refused_before_any_work(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    src = make_ckpt()
    r = xcr("resize", "--model", src, "--res", 490, "--out", given.format(cwd=work))
    assert r.code == 2
    line = one_error_line(r.err)
    assert ("is the current folder" in line or "holds the current folder" in line) and "cannot replace it" in line
    assert "--out ./clip-vit-tiny-patch14-490-" in line, "names a folder that would work"
    assert not litter(tmp_path) and list(work.iterdir()) == []


def test_a_mount_point_is_refused(xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xcomposer_resize.conversion import land as output

    target = tmp_path / "mnt"
    target.mkdir()
    monkeypatch.setattr(output.os.path, "ismount", lambda p: Path(p) == target)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", target)
    assert r.code == 2 and "is a mount point" in one_error_line(r.err)


# ------------------------------------------------------------------ symbolic links


def test_a_link_to_a_folder_to_be_made_receives_the_output(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    disk = tmp_path / "big-disk"
    disk.mkdir()
    link = tmp_path / "out"
    link.symlink_to(disk / "clip-490")  # dangling: the folder is to be made there
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", link, "--json")
    assert r.code == 0, r.err
    assert link.is_symlink(), "the link stays a link"
    assert (disk / "clip-490" / "model.safetensors").is_file()
    assert json.loads(r.out)["outputs"][0]["path"] == str(link)
    assert not litter(tmp_path)


@pytest.mark.parametrize("existing", ["empty", "earlier-output"])
def test_a_link_to_an_existing_folder_is_followed(xcr: Any, make_ckpt: Any, tmp_path: Path, existing: str) -> None:
    src = make_ckpt()
    target = tmp_path / "disk" / "clip"
    target.parent.mkdir()
    if existing == "empty":
        target.mkdir()
    else:
        assert xcr("resize", "--model", src, "--res", 224, "--out", target, "--quiet").code == 0
    link = tmp_path / "out"
    link.symlink_to(target)
    r = xcr("resize", "--model", src, "--res", 490, "--out", link, "--force", "--quiet")
    assert r.code == 0, r.err
    assert link.is_symlink() and link.resolve() == target
    assert json.loads((target / "config.json").read_text())["vision_config"]["image_size"] == 490


def test_a_link_loop_is_one_clear_line(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "a")
    assert r.code == 2 and "exists and is neither a folder nor a file" in one_error_line(r.err)


# ------------------------------------------------------------------ what --force may replace


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ({"notes.txt": "mine", "photos": None}, "holds 2 entries (notes.txt, photos) and is not a checkpoint"),
        ({"config.json": "{}"}, "holds 1 entry (config.json) and is not a checkpoint"),
        ({"model.safetensors": "x"}, "holds 1 entry (model.safetensors) and is not a checkpoint"),
    ],
)
def test_force_never_replaces_what_is_not_a_checkpoint(
    xcr: Any, make_ckpt: Any, tmp_path: Path, content: dict[str, str | None], fragment: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name, text in content.items():
        if text is None:
            (out / name).mkdir()
        else:
            (out / name).write_text(text)
    before = snapshot(out)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", out, "--force")
    assert r.code == 2
    line = one_error_line(r.err)
    assert fragment in line and "--force replaces only an empty folder, a checkpoint" in line
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == sorted(content)


def test_force_never_replaces_a_file(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("precious")
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "out", "--force")
    assert r.code == 2 and "is a file; xcr writes a folder and never replaces a file" in one_error_line(r.err)
    assert (tmp_path / "out").read_text() == "precious"


@pytest.mark.parametrize("fmt", ["sharded", "bin", "bin-sharded"])
def test_force_replaces_another_checkpoint_and_its_weights(xcr: Any, make_ckpt: Any, tmp_path: Path, fmt: str) -> None:
    other = make_ckpt("other", fmt=fmt)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", other, "--force", "--quiet")
    assert r.code == 0, r.err
    assert sorted(p.name for p in other.iterdir()) == sorted(p.name for p in make_ckpt("same").iterdir())
    assert (
        (other / "model.safetensors").is_file() and not list(other.glob("*.bin")) and not list(other.glob("model-0*"))
    )


TRAINER_STATE = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin",
                 "finetune.py", "eval_results.md", "notes.txt")  # fmt: skip


@pytest.mark.parametrize("extra", [*TRAINER_STATE, "adapter_model.safetensors", "generation_config.json"])
def test_force_never_deletes_what_the_new_output_does_not_write(
    xcr: Any, make_ckpt: Any, tmp_path: Path, extra: str
) -> None:
    """A Trainer's checkpoint-N/ folder is a checkpoint plus training state: --force replaces the
    checkpoint's own weights and the files the new output writes, never the rest."""
    out = make_ckpt("checkpoint-500")
    (out / extra).write_bytes(b"state")
    before = snapshot(out)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", out, "--force")
    assert r.code == 2
    line = one_error_line(r.err)
    assert f"is a checkpoint but also holds 1 entry ({extra}) that the new output does not write" in line
    assert "which --force would delete; move it out, or choose another --out" in line
    assert snapshot(out) == before


def test_force_lists_every_entry_it_would_delete(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    out = make_ckpt("checkpoint-500")
    for name in TRAINER_STATE:
        (out / name).write_bytes(b"state")
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", out, "--force")
    line = one_error_line(r.err)
    assert r.code == 2 and "holds 8 entries (eval_results.md, finetune.py, notes.txt, …)" in line


# ------------------------------------------------------------------ permissions


@pytest.mark.parametrize(
    ("src_file", "src_dir", "umask"), [(0o600, 0o700, 0o022), (0o640, 0o750, 0o022), (0o644, 0o755, 0o077)]
)
def test_outputs_are_no_more_readable_than_the_source(
    xcr: Any, make_ckpt: Any, tmp_path: Path, src_file: int, src_dir: int, umask: int
) -> None:
    src = make_ckpt(fmt="bin")
    for p in src.iterdir():
        p.chmod(src_file)
    src.chmod(src_dir)
    old = os.umask(umask)
    try:
        r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out", "--quiet")
    finally:
        os.umask(old)
    assert r.code == 0, r.err
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == (src_dir & ~umask) | 0o700
    for p in out.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == (src_file & ~umask) | 0o600, p.name


def test_the_temporary_is_private_while_it_is_written(
    xcr: Any, make_ckpt: Any, tmp_path: Path, about_to_land: Any
) -> None:
    seen = []
    about_to_land(lambda tmp, final: seen.append(stat.S_IMODE(tmp.stat().st_mode)))
    assert xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "out", "--quiet").code == 0
    assert seen == [0o700]


# ------------------------------------------------------------------ names and paths at the limits


@pytest.mark.parametrize("length", [200, 240, 255])
def test_long_output_names_work(xcr: Any, make_ckpt: Any, tmp_path: Path, length: int) -> None:
    out = tmp_path / ("n" * length)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", out, "--quiet")
    assert r.code == 0, r.err
    assert (out / "model.safetensors").is_file() and not litter(tmp_path)


def test_an_output_name_over_the_limit_is_a_usage_error(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / ("n" * 256))
    assert r.code == 2
    assert "is 256 bytes long, over this file system's limit of 255; choose a shorter --out" in one_error_line(r.err)


def test_an_output_path_over_the_limit_is_a_usage_error(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["d" * 200] * 21)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", deep)
    assert r.code == 2 and "over this system's limit of 4096; choose a shorter --out" in one_error_line(r.err)
    assert not (tmp_path / ("d" * 200)).exists()


def test_a_model_path_over_the_limit_is_a_clear_line(xcr: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", tmp_path / ("m" * 300), "--res", 490)
    assert r.code == 2 and "File name too long" in one_error_line(r.err) and "unexpected" not in r.err


def test_a_long_default_name_is_checked_too(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_ckpt("c" * 253)
    monkeypatch.chdir(tmp_path)
    r = xcr("resize", "--model", src, "--res", 490)  # the default name appends "-490": 257 bytes
    assert r.code == 2 and "over this file system's limit of 255" in one_error_line(r.err)


# ------------------------------------------------------------------ what interruptions leave


def test_a_failed_run_removes_the_parent_folders_it_made(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_errors import enospc_after

    enospc_after(monkeypatch, 1000)
    r = xcr("resize", "--model", make_ckpt(fmt="sharded"), "--res", 490, "--out", tmp_path / "a" / "b" / "c" / "out")
    assert r.code == 1
    assert not (tmp_path / "a").exists(), "the parents this run made are gone with it"


def test_a_failed_run_keeps_parent_folders_that_were_there(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_errors import enospc_after

    (tmp_path / "a").mkdir()
    enospc_after(monkeypatch, 1000)
    r = xcr("resize", "--model", make_ckpt(fmt="sharded"), "--res", 490, "--out", tmp_path / "a" / "b" / "out")
    assert r.code == 1
    assert (tmp_path / "a").is_dir() and not (tmp_path / "a" / "b").exists()


def killed_mid_copy(*args: str) -> None:
    p = subprocess.Popen([sys.executable, "-c", SLOW_XCR, *args], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "copying"
    p.kill()
    p.wait(timeout=30)


def test_a_killed_runs_temporary_is_removed_by_the_next_run_into_the_same_folder(
    make_ckpt: Any, tmp_path: Path, xcr: Any
) -> None:
    src = make_ckpt()
    killed_mid_copy("resize", "--model", str(src), "--res", "490", "--out", str(tmp_path / "first"))
    assert len(litter(tmp_path)) == 1
    r = xcr("resize", "--model", src, "--res", 224, "--out", tmp_path / "second", "--quiet")
    assert r.code == 0, r.err
    assert not litter(tmp_path), "abandoned temporaries of other outputs in the folder are removed too"


def test_an_interrupted_run_removes_the_parents_it_made(make_ckpt: Any, tmp_path: Path) -> None:
    out = tmp_path / "x" / "y" / "out"
    p = subprocess.Popen([sys.executable, "-c", SLOW_XCR, "resize", "--model", str(make_ckpt()), "--res", "490",
                          "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert p.stdout is not None and p.stdout.readline().strip() == "copying"
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=60) == 130
    assert not (tmp_path / "x").exists()


def test_a_live_temporary_held_by_another_host_is_left_alone(make_ckpt: Any, tmp_path: Path, xcr: Any) -> None:
    """A temporary whose PID means nothing here (another host on a shared disk) but whose flock is
    held is a live run: it must survive."""
    import fcntl

    live = tmp_path / ".other.xcr-tmp-999999999-abcdefgh"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "out", "--quiet").code == 0
        assert live.exists()
    finally:
        os.close(fd)
    assert xcr("resize", "--model", make_ckpt(), "--res", 224, "--out", tmp_path / "out2", "--quiet").code == 0
    assert not live.exists(), "once nobody holds it and its process is gone, it is removed"


def test_an_output_a_killed_force_run_moved_aside_is_put_back(make_ckpt: Any, tmp_path: Path, xcr: Any) -> None:
    src = make_ckpt()
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 224, "--out", out, "--quiet").code == 0
    before = snapshot(out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out.rename(tmp_path / f".out.xcr-old-{dead.pid}")  # what a --force run killed mid-landing leaves
    r = xcr("resize", "--model", src, "--res", 490, "--out", out)
    assert r.code == 2 and "pass --force" in one_error_line(r.err), "the old output is back and protected"
    assert snapshot(out) == before and not litter(tmp_path)


def test_a_read_only_parent_is_refused_before_any_work(make_ckpt: Any, tmp_path: Path) -> None:
    from tests.test_reporting import as_restricted_user

    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        p = as_restricted_user("resize", "--model", make_ckpt(), "--res", 490, "--out", parent / "out")
    finally:
        parent.chmod(0o755)
    assert p.returncode == 2
    assert f"cannot write to {parent}: permission denied" in one_error_line(p.stderr)
    assert "COPYING" not in p.stderr


def test_enametoolong_while_writing_is_a_usage_error() -> None:
    from xcomposer_resize.conversion.land import os_error as _os_error

    e = _os_error(OSError(errno.ENAMETOOLONG, "File name too long"), Path("/x"))
    assert e.exit_code == 2 and "too long" in e.message


def test_temporaries_of_long_names_stay_within_limits(tmp_path: Path) -> None:
    from xcomposer_resize.conversion.land import Staging

    out = tmp_path / ("é" * 127)  # 254 bytes
    staging = Staging.create(out)
    try:
        assert len(os.fsencode(staging.path.name)) < 200
        assert staging.path.parent == tmp_path
    finally:
        staging.discard()
    assert not litter(tmp_path)


def test_a_refused_run_cleans_nothing_and_only_xcr_names_are_cleaned(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (src / "m").mkdir()
    look_alikes = [src / "m" / ".notes.xcr-tmp-keep", src / "m" / f".sub.xcr-old-{dead.pid}"]
    for p in look_alikes:
        p.mkdir()
    before = snapshot(src)
    r = xcr("resize", "--model", src, "--res", 490, "--out", src / "m" / "sub")
    assert r.code == 2 and "inside the source folder" in one_error_line(r.err)
    assert snapshot(src) == before and all(p.is_dir() for p in look_alikes), "a refused run touches nothing"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    keep = elsewhere / ".notes.xcr-tmp-keep"
    keep.mkdir()
    assert xcr("resize", "--model", src, "--res", 490, "--out", elsewhere / "out", "--quiet").code == 0
    assert keep.is_dir(), "not a name xcr makes"


def test_an_absolute_out_works_when_the_current_folder_is_gone(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    code = (
        "import os, sys; folder = sys.argv.pop(1); os.chdir(folder); os.rmdir(folder); "
        "from xcomposer_resize.cli.main import run; run()"
    )
    for name, out, expect in (("gone", str(tmp_path / "out"), 0), ("gone2", "relative-out", 2)):
        (tmp_path / name).mkdir()
        args = [str(tmp_path / name), "resize", "--model", str(src), "--res", "490", "--out", out]
        p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert p.returncode == expect, p.stderr
        if expect:
            assert "the current folder is gone" in one_error_line(p.stderr)
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_carried_files_keep_their_execute_bits_and_a_setgid_folder_its_group(
    xcr: Any, make_ckpt: Any, tmp_path: Path
) -> None:
    src = make_ckpt(extra_files={"convert.sh": b"#!/bin/sh\n"})
    (src / "convert.sh").chmod(0o755)
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o2775)
    assert xcr("resize", "--model", src, "--res", 490, "--out", parent / "out", "--quiet").code == 0
    assert stat.S_IMODE((parent / "out" / "convert.sh").stat().st_mode) == 0o755
    assert (parent / "out").stat().st_mode & stat.S_ISGID, "new folders in a setgid folder keep its group"


def test_a_folder_named_like_a_cache_repo_is_not_a_cache(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    out = tmp_path / "models--experiments" / "clip-490"
    assert xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", out, "--quiet").code == 0


def test_a_dangling_processor_link_in_the_source_is_named(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    (src / "preprocessor_config.json").unlink()
    (src / "preprocessor_config.json").symlink_to(tmp_path / "missing-blob")
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2
    assert "preprocessor_config.json is a link to a file that does not exist" in one_error_line(r.err)


def test_force_never_deletes_what_a_user_added_to_an_earlier_output(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    out = tmp_path / "o1"
    assert xcr("resize", "--model", src, "--res", 224, "--out", out, "--quiet").code == 0
    (out / "train.log").write_text("epoch 1")
    (out / "checkpoints").mkdir()
    before = snapshot(out)
    r = xcr("resize", "--model", src, "--res", 490, "--out", out, "--force")
    assert r.code == 2
    line = one_error_line(r.err)
    assert "is an earlier xcr output but also holds 2 entries (checkpoints/, train.log) that it did not write" in line
    assert "which --force would delete" in line
    assert snapshot(out) == before


def test_without_force_force_is_suggested_only_where_it_would_work(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    unrelated = tmp_path / "unrel"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("mine")
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", unrelated)
    assert r.code == 2
    line = one_error_line(r.err)
    assert "is not a checkpoint" in line and "pass --force" not in line


def test_force_replaces_only_what_it_saw(xcr: Any, make_ckpt: Any, tmp_path: Path, about_to_land: Any) -> None:
    """Two --force runs into one --out: the second must not replace the first's fresh output."""
    src = make_ckpt()
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 224, "--out", out, "--quiet").code == 0

    def another_force_run_lands_first(tmp: Path, final: Path) -> None:
        os.rename(out, tmp_path / "gone")
        assert xcr("resize", "--model", src, "--res", 336, "--out", out, "--quiet").code == 0

    about_to_land(another_force_run_lands_first)
    r = xcr("resize", "--model", src, "--res", 490, "--out", out, "--force", "--json")
    assert r.code == 1
    lost(r.out, r.err)
    assert "was created or changed by someone else" in one_error_line(r.err)
    assert json.loads((out / "config.json").read_text())["vision_config"]["image_size"] == 336
