"""Write docs/cli.md from the commands' own help (`make cli-doc`); tests/test_docs.py fails when it is stale.

python -m tests.make_cli_doc docs/cli.md
"""

from __future__ import annotations

import sys
from pathlib import Path

WIDTH = 100  # the help is wrapped at this width, whatever terminal makes the file

INTRO = """# CLI reference

Generated from the commands' own `--help` by `make cli-doc` (a test fails when this file is stale).
What the commands do, with examples: [README](../README.md); every error and exit code:
[errors.md](errors.md).
"""


def reference() -> str:
    """The Markdown text of docs/cli.md."""
    import typer.main

    from xcomposer_resize.cli.app import app

    group = typer.main.get_command(app)
    parts = [INTRO]
    for name, command in [("", group), *sorted(group.commands.items())]:  # type: ignore[attr-defined]
        title = f"xcr {name}".strip()
        ctx = group.make_context("xcr", [], resilient_parsing=True, terminal_width=WIDTH, max_content_width=WIDTH)
        if name:
            ctx = command.make_context(name, [], parent=ctx, resilient_parsing=True,
                                       terminal_width=WIDTH, max_content_width=WIDTH)  # fmt: skip
        text = command.get_help(ctx).rstrip()
        parts.append(f"## `{title}`\n\n```text\n$ {title} --help\n{text}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(reference())
    print(f"wrote {sys.argv[1]}")
