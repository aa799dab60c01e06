"""Success and failure are reported truly: a finished conversion is never reported as a failure
because of the terminal, errors blame the side that is wrong, and a partly cached Hub model says so.

These run xcr as a real process, the way a shell or a CI job does: locales, closed and full stdout,
broken pipes, files this user may not read.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.builders import build
from tests.conftest import snapshot
from tests.hubserver import HubServer
from tests.test_cli import one_error_line

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24

# xcr, with a marker printed when the first byte range is copied (to prove a check came first)
MARKED_XCR = """
import sys
from xcomposer_resize.checkpoint import safetensors as safetensors_io
real = safetensors_io.copy_range
def marked(*a, **k):
    print("COPYING", file=sys.stderr, flush=True)
    return real(*a, **k)
safetensors_io.copy_range = marked
from xcomposer_resize.cli.main import run
sys.argv[0] = "xcr"
run()
"""


def xcr_run(*args: Any, env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", MARKED_XCR, *map(str, args)],
        capture_output=kw.pop("capture_output", "stdout" not in kw),
        text=True,
        errors="replace",
        env={**os.environ, **(env or {})},
        timeout=120,
        **kw,
    )


def _without_dac_override() -> None:
    """In the child: drop root's power to read and list what its mode forbids (a no-op for others)."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


# ------------------------------------------------------------------ a finished conversion is a success


@pytest.mark.parametrize(
    "env",
    [
        {"PYTHONIOENCODING": "latin-1"},
        {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""},
        {"PYTHONIOENCODING": "ascii"},
    ],
)
def test_a_terminal_that_cannot_show_the_symbols_still_gets_a_success(
    make_ckpt: Any, tmp_path: Path, env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    p = xcr_run("resize", "--model", make_ckpt(), "--res", 490, "--out", out, env=env)
    assert p.returncode == 0, p.stderr
    assert unmarked(p.stderr) == ""
    assert str(out) in p.stdout and "35" in p.stdout and "grid" in p.stdout
    assert (out / "model.safetensors").is_file()
    if env.get("PYTHONIOENCODING") == "ascii" or env.get("LC_ALL") == "C":
        assert p.stdout.startswith("ok ") and "35x35 grid" in p.stdout, p.stdout


def test_an_error_with_symbols_is_one_line_in_an_ascii_terminal(make_ckpt: Any, tmp_path: Path) -> None:
    p = xcr_run("resize", "--model", make_ckpt(), "--res", 14 * 100_000, "--out", tmp_path / "out",
                env={"PYTHONIOENCODING": "ascii"})  # fmt: skip
    assert p.returncode == 2
    assert "100000x100000 grid" in one_error_line(p.stderr)


XCR_SH = 'exec "$PY" -c "$MARKED" "$@"'


def shell(redirect: str, *args: Any) -> subprocess.CompletedProcess[str]:
    """Run `xcr ARGS` with its stdout redirected by a shell (`>&-`, `> /dev/full`)."""
    return subprocess.run(
        ["sh", "-c", f"{XCR_SH} {redirect}", "sh", *map(str, args)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PY": sys.executable, "MARKED": MARKED_XCR},
    )  # fmt: skip


def unmarked(stderr: str) -> str:
    """stderr without the copy markers of MARKED_XCR."""
    return "".join(line for line in stderr.splitlines(keepends=True) if line.strip() != "COPYING")


def test_a_closed_stdout_loses_only_the_summary(make_ckpt: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = shell(">&-", "resize", "--model", make_ckpt(), "--res", 490, "--out", out)
    assert p.returncode == 0 and unmarked(p.stderr) == "", p.stderr
    assert (out / "model.safetensors").is_file()


def test_json_to_a_closed_stdout_is_refused_before_any_work(make_ckpt: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = shell(">&-", "resize", "--model", make_ckpt(), "--res", 490, "--out", out, "--json")
    assert p.returncode == 2
    assert "--json: standard output is closed" in one_error_line(p.stderr)
    assert not out.exists() and "COPYING" not in p.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_stdout_fails_only_a_json_run_and_says_the_output_is_complete(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    p = shell("> /dev/full", "resize", "--model", src, "--res", 490, "--out", tmp_path / "a")
    assert p.returncode == 0 and unmarked(p.stderr) == "", p.stderr
    p = shell("> /dev/full", "resize", "--model", src, "--res", 490, "--out", tmp_path / "b", "--json")
    assert p.returncode == 1
    line = one_error_line(unmarked(p.stderr))
    assert f"{tmp_path / 'b'} is complete, but the --json result could not be written to stdout" in line
    assert "No space left on device" in line
    assert (tmp_path / "b" / "model.safetensors").is_file()


def test_a_broken_pipe_fails_only_a_json_run(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    for extra, code in (([], 0), (["--json"], 1)):
        read, write = os.pipe()
        os.close(read)  # nobody will ever read: every write gets EPIPE
        try:
            p = xcr_run("resize", "--model", src, "--res", 490, "--out", tmp_path / f"out{code}", *extra,
                        stdout=write, stderr=subprocess.PIPE)  # fmt: skip
        finally:
            os.close(write)
        assert p.returncode == code, p.stderr
        assert "Traceback" not in p.stderr
        if code:
            assert "Broken pipe" in one_error_line(unmarked(p.stderr))
        assert (tmp_path / f"out{code}" / "model.safetensors").is_file()


def test_ctrl_c_while_the_output_lands_is_not_reported_as_nothing_written(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    from xcomposer_resize.conversion import land as output

    out = tmp_path / "out"
    real = os.rename

    def rename_then_interrupt(a: Any, b: Any) -> None:
        real(a, b)
        if Path(b) == out:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C the instant the output is in place

    monkeypatch.setattr(output.os, "rename", rename_then_interrupt)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", out, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["outputs"][0]["path"] == str(out)
    assert (out / "model.safetensors").is_file()


def test_ctrl_c_while_the_summary_prints_keeps_the_success(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xcomposer_resize.cli import render

    def interrupted(result: Any) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(render, "summary", interrupted)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "out")
    assert r.code == 0 and r.err == ""
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_ctrl_c_between_outputs_names_the_complete_one(
    make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xcomposer_resize import resize
    from xcomposer_resize.conversion import write as convert_module

    real = convert_module.write_target
    calls = []

    def second_is_interrupted(*a: Any, **k: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(convert_module, "write_target", second_is_interrupted)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt) as e:
        resize(make_ckpt("clip-336"), [224, 490])
    assert e.value.completed == (str(tmp_path / "clip-224"),)  # type: ignore[attr-defined]
    from xcomposer_resize.errors import interruption

    assert (
        interruption(e.value).message == f"interrupted; {tmp_path / 'clip-224'} is complete; nothing else was written"
    )


def test_several_complete_outputs_are_named_in_the_plural() -> None:
    from xcomposer_resize.errors import interruption

    message = interruption(KeyboardInterrupt(), ["a/clip-224", "a/clip-490"], what="no plot was drawn").message
    assert message == "interrupted; a/clip-224, a/clip-490 are complete; no plot was drawn"


# ------------------------------------------------------------------ errors blame the right side


def as_restricted_user(*args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", MARKED_XCR, *map(str, args)],
        capture_output=True, text=True, timeout=120, preexec_fn=_without_dac_override,
    )  # fmt: skip


def test_an_unreadable_source_file_is_named_before_anything_is_copied(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="sharded")
    private = src / "tokenizer_config.json"
    before = snapshot(src)
    private.chmod(0o000)
    try:
        p = as_restricted_user("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    finally:
        private.chmod(0o644)
    assert p.returncode == 2
    line = one_error_line(p.stderr)
    assert f"cannot read {private}: Permission denied" in line and "--out" not in line
    assert "COPYING" not in p.stderr, "found before a byte was copied"
    assert not (tmp_path / "out").exists() and not [x for x in tmp_path.iterdir() if ".xcr-" in x.name]
    assert snapshot(src) == before


@pytest.mark.parametrize("victim", ["model-00002-of-00003.safetensors", "README.md", "preprocessor_config.json"])
def test_unreadable_weights_card_or_processor_name_the_file(make_ckpt: Any, tmp_path: Path, victim: str) -> None:
    src = make_ckpt(fmt="sharded")
    (src / victim).chmod(0o000)
    try:
        p = as_restricted_user("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    finally:
        (src / victim).chmod(0o644)
    assert p.returncode == 2
    assert f"cannot read {src / victim}: Permission denied" in one_error_line(p.stderr)
    assert "COPYING" not in p.stderr and not (tmp_path / "out").exists()


def test_a_source_folder_that_cannot_be_listed_is_named(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    src.chmod(0o311)  # files can be opened by name, the folder cannot be listed
    try:
        p = as_restricted_user("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    finally:
        src.chmod(0o755)
    assert p.returncode == 2
    assert f"cannot list the source folder {src}: Permission denied" in one_error_line(p.stderr)
    assert "COPYING" not in p.stderr and not (tmp_path / "out").exists()


def test_an_unreadable_bin_is_named_not_called_damaged(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="bin")
    (src / "pytorch_model.bin").chmod(0o000)
    try:
        p = as_restricted_user("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    finally:
        (src / "pytorch_model.bin").chmod(0o644)
    assert p.returncode == 2
    assert f"cannot read {src / 'pytorch_model.bin'}: Permission denied" in one_error_line(p.stderr)


def test_a_source_file_unreadable_after_the_check_is_still_blamed_on_the_source(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    from xcomposer_resize.conversion import write as convert_module

    src = make_ckpt()
    victim = src / "vocab.json"
    checked = []

    def open_once(path: Any, *a: Any, **k: Any) -> Any:
        if Path(path) == victim:
            checked.append(path)
            if len(checked) > 1:  # readable when checked, not when copied (permissions changed meanwhile)
                raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *a, **k)

    monkeypatch.setattr(convert_module, "open", open_once, raising=False)
    monkeypatch.setattr("xcomposer_resize.checkpoint.weights.open", open_once, raising=False)
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2
    assert f"cannot read {victim}: Permission denied" in one_error_line(r.err)
    assert not (tmp_path / "out").exists() and not [x for x in tmp_path.iterdir() if ".xcr-" in x.name]


# ------------------------------------------------------------------ a partly cached Hub model


def test_a_partly_cached_model_offline_says_the_weights_are_missing(hub: HubServer, tmp_path: Path) -> None:
    rid = f"tester/partly-{tmp_path.name[-10:]}"
    hub.add(rid, build(tmp_path / "src", fmt="bin"))
    env = {"HF_HUB_OFFLINE": "1"}
    first = xcr_run("resize", "--model", rid, "--res", 5, "--out", tmp_path / "out")  # fetches metadata only
    assert first.returncode == 2 and "pytorch_model.bin" not in hub.downloaded(rid)
    p = xcr_run("resize", "--model", rid, "--res", 490, "--out", tmp_path / "out", env=env)
    assert p.returncode == 1
    line = one_error_line(p.stderr)
    assert f"{rid} is only partly in the local cache (its weights were not downloaded" in line
    assert "without HF_HUB_OFFLINE=1" in line and "has no weights" not in line
    assert not (tmp_path / "out").exists()


def test_a_sharded_model_missing_a_cached_shard_offline(hub: HubServer, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download

    rid = f"tester/shards-{tmp_path.name[-10:]}"
    src = build(tmp_path / "src", fmt="sharded")
    hub.add(rid, src)
    for name in ("config.json", "preprocessor_config.json", "model.safetensors.index.json",
                 "model-00001-of-00003.safetensors"):  # fmt: skip
        hf_hub_download(rid, name)
    p = xcr_run("resize", "--model", rid, "--res", 490, "--out", tmp_path / "out", env={"HF_HUB_OFFLINE": "1"})
    assert p.returncode == 1
    assert "(2 of its 3 weight shards were not downloaded" in one_error_line(p.stderr)


@pytest.mark.parametrize("force", [False, True])
def test_ctrl_c_at_landing_with_another_thread_running(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, force: bool
) -> None:
    """The kernel may hand the signal to any thread (rich's progress bar runs one): holding it back
    must not depend on which."""
    import signal
    import threading

    from xcomposer_resize.conversion import land as output

    src = make_ckpt()
    out = tmp_path / "out"
    if force:
        assert xcr("resize", "--model", src, "--res", 224, "--out", out, "--quiet").code == 0
    real = os.rename
    stop = threading.Event()
    busy = threading.Thread(target=lambda: [stop.wait(0.001) for _ in iter(stop.is_set, True)], daemon=True)
    busy.start()

    def rename_then_interrupt(a: Any, b: Any) -> None:
        real(a, b)
        if Path(b) == out:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)  # and a second signal on top
            time.sleep(0.05)  # let them arrive, in whichever thread, before landing is recorded

    monkeypatch.setattr(output.os, "rename", rename_then_interrupt)
    try:
        for i in range(5):
            r = xcr("resize", "--model", src, "--res", 490, "--out", out, "--force", "--json")
            assert r.code == 0, (i, r.err)
            assert json.loads((out / "config.json").read_text())["vision_config"]["image_size"] == 490
            assert not [x for x in tmp_path.iterdir() if ".xcr-" in x.name]
    finally:
        stop.set()


def test_ctrl_c_while_the_json_is_written_says_the_output_is_complete(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xcomposer_resize.cli import deliver as cli

    real = cli.write

    def interrupted(stream: Any, text: str) -> Any:
        if text.startswith("{"):
            raise KeyboardInterrupt
        return real(stream, text)

    monkeypatch.setattr(cli, "write", interrupted)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "out", "--json")
    assert r.code == 130
    assert f"interrupted; {tmp_path / 'out'} is complete; its --json result was not written" in one_error_line(r.err)
    assert (tmp_path / "out" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("damage", "says"),
    [("unreadable", "the output did not read back as written (model.safetensors was cut short)"),
     ("changed", "model.safetensors was not written as planned"),
     ("table", "xcr: error: vision_model.embeddings.position_ids did not read back as written")],
)  # fmt: skip
def test_an_output_that_does_not_read_back_is_the_disks_fault(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str, says: str
) -> None:
    from xcomposer_resize.conversion import write as convert_module
    from xcomposer_resize.errors import InputError

    real = convert_module.read_bytes

    def disk(path: Path, start: int, nbytes: int) -> bytearray:
        if damage == "unreadable":
            raise InputError(f"{path.name} was cut short")
        got = real(path, start, nbytes)
        if (damage == "changed") == (start == 0):  # the header, or a tensor
            got[-1] ^= 1
        return got

    monkeypatch.setattr(convert_module, "read_bytes", disk)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "out")
    assert r.code == 1
    assert says in one_error_line(r.err) and "disk may be failing" in r.err
    assert not (tmp_path / "out").exists()


def test_a_source_folder_name_that_is_not_utf8(make_ckpt: Any, tmp_path: Path) -> None:
    from xcomposer_resize import resize

    src = make_ckpt()
    odd = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/clip-\xff-336"))
    src.rename(odd)
    result = resize(odd, 490, tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "clip-\ufffd-336" in card and result.outputs[0].path == str(tmp_path / "out")


def test_a_config_with_a_lone_surrogate_escape_is_kept_escaped(make_ckpt: Any, tmp_path: Path) -> None:
    from xcomposer_resize import resize

    src = make_ckpt()
    text = (src / "config.json").read_text().replace('"_name_or_path": "openai', '"_name_or_path": "\\ud800openai', 1)
    (src / "config.json").write_text(text)
    resize(src, 490, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["_name_or_path"].startswith("\ud800")


HOSTILE_CARDS = {
    "aliases": "---\nlicense: mit\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\ntags: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n---\nbody\n",
    "bad date": "---\nlicense: mit\ndate: 2024-13-45\n---\nbody\n",
    "deep": "---\nx: " + "[" * 3000 + "]" * 3000 + "\n---\nbody\n",
    "huge": "---\nlicense: mit\nx: '" + "y" * (70 << 10) + "'\n---\nbody\n",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_CARDS))
def test_a_hostile_source_card_is_kept_as_text_not_expanded(make_ckpt: Any, tmp_path: Path, kind: str) -> None:
    from huggingface_hub import ModelCard

    from xcomposer_resize import resize

    text = HOSTILE_CARDS[kind]
    src = make_ckpt(extra_files={"README.md": text.encode()})
    resize(src, 490, tmp_path / "out")
    out = (tmp_path / "out" / "README.md").read_text()
    assert len(out) < len(text) + 4000, "nothing was expanded"
    card = ModelCard(out)
    assert card.data.license is None and "xcomposer-resize" in card.data.tags


def test_the_card_is_the_same_whatever_the_hash_seed(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(extra_files={"README.md": b"---\nlicense: mit\ntags: !!set {b, a, c, d, e, f}\n---\nbody\n"})
    cards = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"out{seed}"
        p = xcr_run("resize", "--model", src, "--res", 490, "--out", out, "--quiet", env={"PYTHONHASHSEED": seed})
        assert p.returncode == 0, p.stderr
        cards.append((out / "README.md").read_bytes())
    assert cards[0] == cards[1] == cards[2]
    assert b"tags:\n- a\n- b\n- c\n" in cards[0]


# ------------------------------------------------------------------ what a stranger hit (round two)


def test_a_signal_while_the_cli_is_imported_is_one_line(tmp_path: Path) -> None:
    code = (
        "import builtins, os, signal\n"
        "real = builtins.__import__\n"
        "def imp(name, *a, **k):\n"
        "    if name == 'cli':\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imp\n"
        "from xcomposer_resize.cli.entry import run\n"
        "run()\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, "resize", "--res", "490"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 143
    assert one_error_line(p.stderr) == "xcr: error: terminated (SIGTERM); nothing was written"


def test_a_signal_while_typer_parses_is_not_a_quiet_130(xcr: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from xcomposer_resize.cli import app as cli

    def terminated(value: bool) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # typer turns an interruption here into a silent exit 130

    monkeypatch.setattr(cli, "_version", terminated)
    cli.app.registered_callback = None
    cli.app.callback()(cli.root)  # re-register so the patched callback is used
    try:
        r = xcr("--version")
    finally:
        monkeypatch.undo()
        cli.app.registered_callback = None
        cli.app.callback()(cli.root)
    assert r.code == 143
    assert one_error_line(r.err) == "xcr: error: terminated (SIGTERM); nothing was written"


def test_debug_adds_the_traceback_and_keeps_the_exit_code(make_ckpt: Any, tmp_path: Path) -> None:
    p = xcr_run("resize", "--model", make_ckpt(), "--res", 5, "--out", tmp_path / "out", env={"XCR_DEBUG": "1"})
    assert p.returncode == 2
    assert "Traceback" in p.stderr and "UsageError" in p.stderr
    assert p.stderr.strip().splitlines()[-1] == "xcr: error: --res 5 is smaller than one 14-px patch; use at least 14"


def test_an_option_given_twice_is_refused(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    for args in (["--out", tmp_path / "a", "--out", tmp_path / "b"], ["--out=x", "-o", "y"]):
        r = xcr("resize", "--model", make_ckpt(), "--res", 490, *args)
        assert r.code == 2 and one_error_line(r.err) == "xcr: error: --out is given 2 times; give it once"
    r = xcr("resize", "-m", make_ckpt(), "--model", make_ckpt(), "--res", 490)
    assert r.code == 2 and "--model is given 2 times" in one_error_line(r.err)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize(("name", "fragment"), [("config.json", "config.json is not a regular file"),
                                                ("preprocessor_config.json", "preprocessor_config.json is not a regular file")])  # fmt: skip
def test_a_fifo_the_conversion_must_read_is_refused_not_waited_on(
    make_ckpt: Any, tmp_path: Path, name: str, fragment: str
) -> None:
    src = make_ckpt()
    (src / name).unlink()
    os.mkfifo(src / name)
    p = xcr_run("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert p.returncode == 2 and fragment in one_error_line(unmarked(p.stderr))
    assert not (tmp_path / "out").exists()


def test_special_files_to_carry_are_left_out_with_a_note(make_ckpt: Any, tmp_path: Path) -> None:
    from xcomposer_resize import resize

    src = make_ckpt()
    os.mkfifo(src / "tokenizer.json")
    (src / "added_tokens.json").symlink_to(tmp_path / "never-downloaded")
    notes: list[str] = []
    resize(src, 490, tmp_path / "out", on_note=notes.append)
    assert "tokenizer.json is not carried over: it is not a regular file (a FIFO, socket or device)" in notes
    assert any(
        n.startswith("added_tokens.json is not carried over: it is a link to a file that does not exist") for n in notes
    )
    assert not (tmp_path / "out" / "tokenizer.json").exists()


def test_weights_that_are_a_dangling_link_are_named(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="bin")
    (src / "pytorch_model.bin").unlink()
    (src / "pytorch_model.bin").symlink_to(tmp_path / "blob-never-fetched")
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2
    line = one_error_line(r.err)
    assert "pytorch_model.bin is a link to a file that does not exist (an interrupted download?)" in line
    assert "has no weights" not in line


def test_a_cut_short_bin_is_called_damaged(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="bin")
    data = (src / "pytorch_model.bin").read_bytes()
    (src / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2
    assert "pytorch_model.bin is a damaged torch zip archive (cut short?); re-download it" in one_error_line(r.err)


def test_front_matter_that_cannot_be_used_is_noted(make_ckpt: Any, tmp_path: Path) -> None:
    from xcomposer_resize import resize

    src = make_ckpt(extra_files={"README.md": b"---\nlicense: mit\n  bad: [indent\n---\nbody\n"})
    notes: list[str] = []
    resize(src, 490, tmp_path / "out", on_note=notes.append)
    assert any("front matter of the source's README.md is not used (it is not valid YAML" in n for n in notes)


def test_an_old_output_that_cannot_be_deleted_is_reported(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xcomposer_resize.conversion import land as output
    from xcomposer_resize.errors import OutputError

    src = make_ckpt()
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 224, "--out", out, "--quiet").code == 0
    real = output.remove

    def refuse_old(path: Path) -> None:
        if ".xcr-old-" in path.name:
            raise OutputError(f"cannot remove {path}: Permission denied")
        real(path)

    monkeypatch.setattr(output, "remove", refuse_old)
    r = xcr("resize", "--model", src, "--res", 490, "--out", out, "--force")
    assert r.code == 0, r.err
    assert "replaced the old output, but that could not be deleted" in r.err and ".xcr-old-" in r.err


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_zombie_is_not_alive() -> None:
    from xcomposer_resize.conversion.land import _alive

    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert _alive(str(p.pid))
    p.kill()
    try:
        deadline = time.monotonic() + 30  # killed, not yet reaped: wait until the kernel says zombie
        while Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the killed process never became a zombie"
            time.sleep(0.01)
        assert not _alive(str(p.pid))
    finally:
        p.wait()


def test_a_read_only_file_system_is_named(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xcomposer_resize.conversion import land as output

    real = os.statvfs

    class ReadOnly:
        def __init__(self, st: Any) -> None:
            self.f_flag = st.f_flag | os.ST_RDONLY

    monkeypatch.setattr(output.os, "statvfs", lambda p: ReadOnly(real(p)))
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2
    assert f"cannot write to {tmp_path}: it is on a read-only file system" in one_error_line(r.err)


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_a_folder_that_cannot_be_made_does_not_show_a_temporary(xcr: Any, make_ckpt: Any) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", "/proc/xcr-test-out")
    assert r.code in (1, 2)
    line = one_error_line(r.err)
    assert "xcr-tmp" not in line and "/proc/xcr-test-out" in line


def test_empty_paths_say_what_to_give(xcr: Any, make_ckpt: Any) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", "")
    assert r.code == 2 and one_error_line(r.err) == "xcr: error: --out is empty; give a folder path"
    r = xcr("resize", "--model", "", "--res", 490)
    assert r.code == 2 and "--model is empty; give a checkpoint folder or a Hub repo id" in one_error_line(r.err)


def test_the_python_api_shows_paths_as_text_and_takes_bytes(make_ckpt: Any, tmp_path: Path) -> None:
    from xcomposer_resize import XcrError, resize

    with pytest.raises(XcrError) as e:
        resize(make_ckpt(), 490, 5)  # type: ignore[arg-type]
    assert str(e.value) == "out must be a folder path, not int 5"
    out = tmp_path / "o"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(XcrError) as e:
        resize(make_ckpt(), 490, out)
    assert str(e.value).startswith(f"out='{out}' holds 1 entry (x) and is not a checkpoint")
    result = resize(os.fsencode(str(make_ckpt())), 490, os.fsencode(str(tmp_path / "b")))  # type: ignore[arg-type]
    assert result.outputs[0].path == str(tmp_path / "b")
