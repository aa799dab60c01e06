"""How results look: rich renderings of every command's result, the progress bar and notes, and the
one writer of text to a stream, which never fails a run that is done (text a terminal cannot show
becomes ASCII; a closed stream is reported, not raised)."""

from __future__ import annotations

import io
import json
import os
import sys
from typing import IO, TYPE_CHECKING, Any

from ..size import Size
from ..text import human_bytes, printable

if TYPE_CHECKING:
    from ..commands.inspect import Inspection
    from ..commands.verify import Verification
    from ..conversion.resize import Result


def presets() -> str:
    """`xcr presets`: the variants and their sizes, in a table."""
    from rich.markup import escape
    from rich.table import Table

    from .. import presets as table

    grid = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("preset", "res", "grid", "note"):
        grid.add_column(column, overflow="fold")
    for p in table.PRESETS:
        grid.add_row(p.name, str(p.res), f"{p.grid}×{p.grid}", escape(p.note))
    return rendered([grid], sys.stdout) + f"source of every preset: {table.DEFAULT_MODEL}\n"


def verification(found: Verification) -> str:
    from rich.markup import escape
    from rich.table import Table

    rows = Table(box=None, show_header=False, pad_edge=False)
    rows.add_column()
    rows.add_column(style="bold")
    rows.add_column(overflow="fold")
    marks = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: "[dim]–[/dim]"}
    for c in found.checks:
        rows.add_row(marks[c.ok], c.check, escape(c.detail))
    ran = [c for c in found.checks if c.ok is not None]
    skipped = [c.check for c in found.checks if c.ok is None]
    if found.ok:
        verdict = f"{found.output}: all {len(ran)} checks that ran passed"
        verdict += f"; skipped: {', '.join(skipped)}" if skipped else ""
    else:
        verdict = f"{found.output}: failed: {', '.join(found.failed)}"
    lines: list[Any] = [rows, escape(verdict)]
    if found.drift is not None:
        d = found.drift
        worst = ", ".join(
            f"{escape(repr(w['file']) if not w['file'].isprintable() else w['file'])} {w['cosine']:.4f}"
            for w in d.worst
        )
        lines.append(f"drift over {d.images} image(s): mean cosine {d.mean:.4f}, min {d.min:.4f} (worst: {worst})")
    return rendered(lines, sys.stdout)


def inspection(found: Inspection) -> str:
    from rich.markup import escape
    from rich.table import Table

    rows = Table(box=None, show_header=False, pad_edge=False)
    rows.add_column(style="bold")
    rows.add_column(overflow="fold")
    t = found.table
    g, p = found.grid, found.patch_size
    stated = "" if found.stated else f" (not in {found.config_file}: {found.library}'s defaults)"
    rows.add_row("source", escape(found.source) + (f" @ {found.revision[:12]}" if found.revision else ""))
    rows.add_row(
        "family",
        f"{found.family} (--family {found.family_flag}; {found.model_type or 'no model_type'}; "
        f"{', '.join(found.architectures) or 'no architectures'})",
    )
    shown = Size.from_json(found.image_size)
    rows.add_row("input", f"{shown.px if shown else found.image_size}, {p}-px patches, a {g[0]}×{g[1]} grid{stated}")
    if t:
        implied = "" if t.known_from == "weights" else " (implied by config.json: the weights are not on this machine)"
        rows.add_row(
            "position table",
            f"{escape(t.name)} {t.dtype} {t.shape}, {found.prefix_tokens} prefix row{'s' * (found.prefix_tokens != 1)}"
            + implied,
        )
    rows.add_row("position ids", escape(found.position_ids or "none"))
    if found.tower:
        rows.add_row("vision tower", escape(found.tower))
        rows.add_row(
            "image tokens", f"{found.image_tokens} per image (per tile) at this size; {found.image_tokens_rule}"
        )
    a = found.accepted_res
    rows.add_row(
        "--res accepted",
        f"{a['min']} to {a['max']} (a square's side); multiples of {a['multiple_of']} fit the patches exactly; "
        + (f"the grid a multiple of {a['grid_multiple_of']}; " if a["grid_multiple_of"] > 1 else "")
        + ("HxW such as 448x672 too" if a["non_square"] else "square only"),
    )
    rows.add_row("default method", escape(found.method))
    if found.parameters is not None:
        kinds = ", ".join(f"{d} {n:,}" for d, n in sorted(found.dtypes.items()))
        rows.add_row("parameters", f"{found.parameters:,} ({kinds})")
    files = ", ".join(f"{escape(w['name'])} ({_size(w['bytes'])})" for w in found.weight_files) or "none"
    where = "on this machine" if found.weights_local else "not downloaded"
    sharding = "sharded, " if found.sharded else ""
    rows.add_row("weights", f"{found.weights_format or 'none'}, {sharding}{where}: {files}")
    for name, sizes in found.processors.items():
        rows.add_row(escape(name), escape(", ".join(f"{k} {json.dumps(v)}" for k, v in sizes.items()) or "no sizes"))
    if found.download is not None:
        d = found.download
        rows.add_row("a conversion downloads", f"{len(d['files'])} files, {_size(d['bytes'])} (weights and metadata)")
    rows.add_row("files", f"{len(found.files)}, {_size(sum(f['bytes'] or 0 for f in found.files))}")
    left = [f["name"] for f in found.files if f["role"] == "not carried"]
    if left:
        rows.add_row("not carried", escape(", ".join(left[:8]) + (", …" if len(left) > 8 else "")))
    for problem in found.problems:
        rows.add_row("[red]problem[/red]", escape(problem))
    return rendered([rows], sys.stdout)


def _size(n: int | None) -> str:
    return "size unknown" if n is None else human_bytes(n)


def summary(result: Result) -> str:
    from rich.markup import escape

    if not result.outputs:
        return rendered(["nothing to write: no conversion is needed (see the note above)"], sys.stdout)
    lines = []
    for o in result.outputs:
        done = " (up to date)" if o.up_to_date else ""
        lines.append(f"[green]✓[/green] {escape(o.path)}  [dim]{o.res.px}, {o.grid[0]}×{o.grid[1]} grid{done}[/dim]")
    lines.append(f"  from {escape(result.source)}" + (f" @ {result.revision[:12]}" if result.revision else ""))
    if result.bytes_written:
        lines.append(f"  rewritten: {escape(', '.join(result.tensors_rewritten) or 'none (grid unchanged)')}")
        settings = _settings(result)
        if settings:
            lines.append(f"  settings: {escape(settings)}")
        shared = result.bytes_shared
        how = f" ({human_bytes(shared)} shared with the source, {human_bytes(result.bytes_written - shared)} written)"
        lines.append(f"  {human_bytes(result.bytes_written)}{how if shared else ''} in {result.seconds:.1f} s")
    return rendered(lines, sys.stdout)


def _settings(result: Result) -> str:
    """The keys the outputs' JSON files changed, file by file: "config.json (vision_config.image_size), …"."""
    keys: dict[str, dict[str, None]] = {}
    for o in result.outputs:
        for name, changes in (o.settings or {}).items():
            keys.setdefault(name, {}).update(dict.fromkeys(changes))
    return ", ".join(f"{name} ({', '.join(found)})" for name, found in keys.items() if found)


def rendered(lines: list[Any], stream: IO[str] | None) -> str:
    """rich markup (or renderables) → text for `stream`: colours only on a terminal, no wrapping."""
    from rich.console import Console

    tty = isatty(stream)
    buf = io.StringIO()
    console = Console(
        file=buf, force_terminal=tty, color_system="auto" if tty else None, highlight=False, soft_wrap=True,
        width=200 if not tty else None,
    )  # fmt: skip
    for line in lines:
        console.print(line)
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


class Progress:
    """A rich byte progress bar on stderr, in binary units like the summary; nothing when silent
    or when stderr is not a terminal. Notes go to stderr. Neither can fail the run."""

    def __init__(self, silent: bool) -> None:
        self.silent = silent
        self.bar: Any = None
        self.task: Any = None
        self.broken = False

    def __enter__(self) -> Progress:
        return self

    def update(self, done: int, total: int) -> None:
        if self.silent or self.broken or not isatty(sys.stderr):
            return
        try:
            if self.bar is None:
                self.bar = progress_bar()
                self.bar.start()
                self.task = self.bar.add_task("write", total=total)
            self.bar.update(self.task, completed=done, total=total)
        except Exception:  # a terminal that cannot show it: go on without a bar
            self.broken = True

    def note(self, message: str) -> None:
        if not self.silent:
            from rich.markup import escape

            write(sys.stderr, rendered([f"[yellow]note:[/yellow] {escape(message)}"], sys.stderr))

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            try:
                self.bar.stop()
            except Exception:
                pass


def progress_bar() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, TextColumn
    from rich.text import Text

    class Speed(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{human_bytes(speed)}/s" if speed else "", style="progress.data.speed")

    console = Console(stderr=True, highlight=False)
    return Progress(
        TextColumn("writing"), BarColumn(), DownloadColumn(binary_units=True), Speed(),
        console=console, transient=True,
    )  # fmt: skip


def closed(stream: IO[str] | None) -> bool:
    if stream is None:
        return True
    try:
        os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return not hasattr(stream, "getvalue")  # an in-memory stream (tests) is open
    return False


def isatty(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


def write(stream: IO[str] | None, text: str) -> str | None:
    """Write `text` as far as the stream's encoding can show it; return why it failed, or None."""
    if stream is None:
        return "it is closed"
    try:
        stream.write(printable(text, getattr(stream, "encoding", None)))
        stream.flush()
    except (OSError, ValueError) as e:
        return (e.strerror if isinstance(e, OSError) else None) or str(e) or type(e).__name__
    return None


def error_line(message: str) -> None:
    write(sys.stderr, f"xcr: error: {' '.join(message.split())}\n")
