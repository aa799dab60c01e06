"""Docs are part of the feature: a flag or command that is not documented fails a test."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from xcomposer_resize.cli.app import app

REPO = Path(__file__).resolve().parents[1]


def flags() -> set[str]:
    import typer.main

    command = typer.main.get_command(app)
    resize = command.commands["resize"]  # type: ignore[attr-defined]
    return {opt for p in resize.params for opt in p.opts if opt.startswith("--")}


def test_every_flag_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = sorted(f for f in flags() if f"`{f}" not in readme)
    assert not missing, f"README.md does not document {missing}"


def test_every_command_is_in_the_readme() -> None:
    import typer.main

    readme = (REPO / "README.md").read_text()
    for name in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        assert f"xcr {name}" in readme


def test_readme_shows_the_setup_commands_and_links_resolve() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    for link in re.findall(r"\]\(([^)#]+\.md)\)", readme):
        assert (REPO / link).is_file(), link


def test_error_docs_name_every_exit_code() -> None:
    errors = (REPO / "docs" / "errors.md").read_text()
    for code in ("| 2 |", "| 1 |", "| 130 |", "| 143 |"):
        assert code in errors


def test_bench_script_runs_on_a_tiny_replica(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "perf.md"
    p = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--tiny", "--runs", "1", "--cow-runs", "1", "--work", str(tmp_path), "--write", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    text = out.read_text()
    for row in ("| cp -r |", "| xcr resize |", "| transformers round trip |", "xcr --help", "xcr resize --help",
                "(one run)", "(three runs)", "--dtype bfloat16", "--vision-only", "--fsync", "output up to date",
                "loop-mounted XFS"):  # fmt: skip
        assert row in text, row
    assert "Machine:" in text and "make bench" in text
    assert "xfs" in text and "btrfs" in text, "the copy-on-write rows, or why they were skipped"


def test_the_cli_reference_is_current() -> None:
    from tests.make_cli_doc import reference

    assert (REPO / "docs" / "cli.md").read_text() == reference(), "docs/cli.md is stale: run make cli-doc"


def test_the_readme_sample_is_what_xcr_prints(hub: Any, tmp_path: Path) -> None:
    """The README's first example, run on a tiny replica of the default model's repo (a .bin and a
    tf_model.h5), prints what the README shows: the same lines, but for the folder, the commit and
    the size and time of this run."""
    import os
    import subprocess
    import sys

    from tests.builders import build

    readme = (REPO / "README.md").read_text()
    sample = readme.split("~$ xcr resize --res 490\n", 1)[1].split("```", 1)[0].splitlines()
    src = build(tmp_path / "src", fmt="bin", extra_files={"tf_model.h5": b"HDF"})
    sha = hub.add("openai/clip-vit-large-patch14-336", src)
    home = tmp_path / "me"
    home.mkdir()
    p = subprocess.run(
        [sys.executable, "-m", "xcomposer_resize", "resize", "--res", "490"],
        cwd=home, env={**os.environ, "HOME": str(home)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    got = (p.stderr + p.stdout).splitlines()
    want = [line.replace("/home/me", str(home)).replace("9a6ab0ed2ff9", sha[:12]) for line in sample]
    assert re.fullmatch(r"  [0-9.]+ [KMG]iB in [0-9.]+ s", got[-1]) and re.fullmatch(
        r"  1.6 GiB in [0-9.]+ s", want[-1]
    )
    assert got[:-1] == want[:-1]


def test_help_and_readme_name_the_families_and_defaults_of_the_family_table() -> None:
    """Family lists and per-family defaults come from the table; the README's flag rows agree with it."""
    from xcomposer_resize.cli.main import main
    from xcomposer_resize.families import FAMILIES, NAMES, method_words, non_square_words

    _mode, antialias = method_words()
    on = [f.name for f in FAMILIES if f.antialias]
    assert antialias.startswith(f"on for {', '.join(on)}; off for ")
    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `--antialias`"))
    assert antialias in row
    row = next(line for line in readme.splitlines() if line.startswith("| `--family NAME`"))
    assert all(f"`{name}`" in row for name in NAMES)
    row = next(line for line in readme.splitlines() if line.startswith("| `--res N`"))
    assert f"for {non_square_words()}, whose configs" in row
    import contextlib
    import io

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        main(["resize", "--help"])
    help_text = " ".join(text.getvalue().split())
    assert antialias in help_text and f"for {non_square_words()}." in help_text
    assert ", ".join(NAMES) in help_text
