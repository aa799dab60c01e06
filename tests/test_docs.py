"""Docs are part of the feature: a flag or command that is not documented fails a test."""

from __future__ import annotations

import re
from pathlib import Path

from xcomposer_resize.cli import app

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
        [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--tiny", "--runs", "1", "--work", str(tmp_path), "--write", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    text = out.read_text()
    for row in ("| cp -r |", "| xcr resize |", "| transformers round trip |", "xcr --help", "xcr resize --help",
                "(one run)", "(three runs)", "--dtype bfloat16", "--vision-only", "--fsync", "output up to date"):  # fmt: skip
        assert row in text, row
    assert "Machine:" in text and "make bench" in text


def test_the_cli_reference_is_current() -> None:
    from tests.make_cli_doc import reference

    assert (REPO / "docs" / "cli.md").read_text() == reference(), "docs/cli.md is stale: run make cli-doc"
