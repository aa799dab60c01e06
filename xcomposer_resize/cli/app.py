"""The `xcr` command: parse flags, call one library function, render the result with rich.

`main()` is the one place where errors become messages: one line on stderr, exit code 2 for bad
usage or input, 1 otherwise, 130 on Ctrl-C. `XCR_DEBUG=1` shows the traceback instead.

Once an output has landed, nothing about printing turns the run into a failure: text the terminal
cannot encode is shown in ASCII, and a closed or full stdout only loses the summary. The one
exception is `--json`, whose output is the result: if it cannot be written, the run fails and says so.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import io
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn

import typer

from ..errors import OutputError, SigTerm, UsageError, XcrError, cli_spelling, complete, interruption
from ..families import family_words, flag_names, method_words, non_square_words
from ..size import Size
from ..text import human_bytes, printable
from ..version import __version__

DEFAULT_MODEL = "openai/clip-vit-large-patch14-336"  # presets.DEFAULT_MODEL, here without importing it

ABOUT = (
    f"Resize the vision position embeddings of a checkpoint ({family_words()}) to a new input resolution, exactly, "
    "ready for fine-tuning."
)
MODE_DEFAULT, ANTIALIAS_DEFAULT = method_words()

app = typer.Typer(
    name="xcr",
    help=ABOUT,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class DType(str, enum.Enum):
    keep = "keep"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


class Mode(str, enum.Enum):
    bicubic = "bicubic"
    bilinear = "bilinear"
    nearest = "nearest"
    area = "area"


def _pixels(value: str) -> Size:
    """--res: pixels (490), or height x width (448x672) for the families whose configs state both."""
    import re

    text = value.strip()
    if re.fullmatch(r"[+-][0-9]+", text):
        return Size.square(int(text))  # a sign is judged by build_options, in words of its own
    found = Size.parse(text)
    if found is None:
        raise typer.BadParameter(f"{text!r} is not a size such as 490, or 448x672 (height x width)")
    return found


def _version(value: bool) -> None:
    if value:
        _write(sys.stdout, f"xcr {__version__}\n")
        raise typer.Exit()


# options shared by the commands that read a source
FamilyName = Annotated[
    str | None,
    typer.Option(
        "--family",
        metavar="NAME",
        help=f"The model family, when the config does not say it: {flag_names()}.",
        show_default=False,
    ),
]
Revision = Annotated[
    str | None,
    typer.Option("--revision", metavar="REV", help="Hub branch, tag or commit (default main).", show_default=False),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        help="Hub token (default: HF_TOKEN or the saved login). Never printed or saved.",
        show_default=False,
    ),
]


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Resize the vision position embeddings of a checkpoint to a new input resolution, exactly."""


@app.command()
def resize(
    res: Annotated[
        list[Size] | None,
        typer.Option(
            "--res",
            "-r",
            metavar="PIXELS",
            parser=_pixels,
            help="Target input size in pixels, e.g. 224 or 490: a grid of res // patch (a multiple of the patch "
            f"fits exactly); HxW such as 448x672 (height x width) for {non_square_words()}. Repeat it for "
            "several outputs from one read of the source.",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        list[str] | None,
        typer.Option(
            "--preset",
            "-p",
            metavar="NAME",
            help="Instead of --res: the resolution of an InternLM-XComposer variant (see xcr presets). Repeatable.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="PATH|REPO",
            help=f"Checkpoint folder, or Hub repo id. Default: {DEFAULT_MODEL}.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Output folder (~ is expanded; a link to a folder is followed); with several resolutions it "
            "must hold {res}, e.g. ckpt/clip-{res}. Default: the source's name with its resolution replaced, "
            "in the current folder.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing checkpoint or earlier output (only once the new one is complete).",
        ),
    ] = False,
    dtype: Annotated[
        DType,
        typer.Option(
            "--dtype",
            help="Cast every floating tensor of the output; the table is still resampled in float32 and cast once.",
        ),
    ] = DType.keep,
    vision_only: Annotated[
        bool,
        typer.Option(
            "--vision-only",
            help="Write only the vision tower, with a vision config that CLIPVisionModel loads (XComposer, LLaVA).",
        ),
    ] = False,
    with_projection: Annotated[
        bool,
        typer.Option(
            "--with-projection",
            help="With --vision-only: keep visual_projection, for CLIPVisionModelWithProjection.",
        ),
    ] = False,
    device: Annotated[
        Device,
        typer.Option(
            "--device",
            help="Where to interpolate. cpu is bit-exact with transformers; CUDA's bicubic differs by up to 1 ulp. auto picks CUDA when present.",
        ),
    ] = Device.cpu,
    mode: Annotated[
        Mode | None,
        typer.Option(
            "--mode",
            help=f"Interpolation. Default: what the family's own runtime applies ({MODE_DEFAULT}; for CLIP, "
            "XComposer's resize_pos and transformers' interpolate_pos_encoding).",
            show_default=False,
        ),
    ] = None,
    antialias: Annotated[
        bool | None,
        typer.Option(
            "--antialias/--no-antialias",
            help=f"Antialiased bicubic/bilinear, or not. Default: the family's ({ANTIALIAS_DEFAULT}).",
            show_default=False,
        ),
    ] = None,
    family: FamilyName = None,
    fsync: Annotated[
        bool,
        typer.Option("--fsync", help="Flush every file and the folder to the disk before and after the output lands."),
    ] = False,
    revision: Revision = None,
    token: Token = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Run xcr verify on each output before reporting success (exit 1 naming a failure)."
        ),
    ] = False,
    plot: Annotated[
        str | None,
        typer.Option(
            "--plot",
            metavar="FILE.png",
            help="Draw the source's and the output's position embeddings (with several --res, FILE holds {res}).",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout; no progress.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary.")] = False,
) -> None:
    """Write a copy of a vision checkpoint whose position embeddings and configs are for --res pixels."""
    from ..conversion.resize import convert
    from ..options import build_options

    landed: list[Any] = []  # outputs in place, recorded by the library the instant each lands
    result = None
    try:
        if not res and not preset:
            raise UsageError("give --res N (repeatable) or --preset NAME (see xcr presets)")
        if json_out and _closed(sys.stdout):
            raise UsageError("--json: standard output is closed, so the result would have nowhere to go")
        options = build_options(
            model, res or None, out, preset=preset or None, force=force, device=device.value,
            mode=mode.value if mode is not None else None, antialias=antialias, family=family, revision=revision,
            token=token, dtype=dtype.value, vision_only=vision_only, with_projection=with_projection, fsync=fsync,
        )  # fmt: skip
        if plot is not None:
            from ..commands.plot import check_path, require_matplotlib

            require_matplotlib()
            if len(options.resolutions) > 1 and "{res}" not in plot:
                raise UsageError("--plot names one file; with several resolutions it must hold {res}")
            for r in options.resolutions:
                check_path(_plot_path(plot, r), plot.replace("{res}", str(r)))
        silent = quiet or json_out
        with _Progress(silent) as progress:
            result = convert(
                options, quiet=silent, on_progress=progress.update, on_note=progress.note, on_landed=landed.append
            )
    except KeyboardInterrupt as e:
        if result is None:
            raise interruption(e, [o.path for o in landed]) from None
    # The output has landed: from here on only a --json result that cannot be written, or a failed
    # --verify, fails the run.
    assert result is not None
    outputs = [o.path for o in result.outputs]
    later = " and ".join(w for w, on in (("it was not verified", verify), ("no plot was drawn", plot)) if on)
    if result.interrupted is not None and later:  # Ctrl-C as the last output landed: no more work
        raise interruption(result.interrupted, outputs, what=later)
    try:
        checked = _verify_outputs(result, options.family) if verify else []
        if plot is not None:
            try:
                _plot_outputs(result, plot)
            except XcrError as e:
                raise OutputError(f"{complete(outputs)}, but no plot was drawn: {e.message}") from e
            if not result.outputs:
                _Progress(quiet or json_out).note("no plot was drawn: nothing was written")
    except KeyboardInterrupt as e:
        raise interruption(e, outputs, what=f"{later} (interrupted)") from None
    try:
        if json_out:
            data = result.to_json()
            if verify:
                data["verify"] = [v.to_json() for v in checked]
                data["ok"] = all(v.ok for v in checked)
            problem = _emit_json(data)
            if problem:
                raise OutputError(
                    f"{complete(outputs)}, but the --json result could not be written to stdout: {problem}"
                )
        elif not quiet:
            _write(sys.stdout, "".join(_verification(v) for v in checked) + _summary(result))
    except KeyboardInterrupt as e:  # the output is complete: only a --json result cut short is a failure
        if json_out:
            outputs = [o.path for o in result.outputs]
            raise interruption(e, outputs, what="its --json result was not written") from None
    failed = [v for v in checked if not v.ok]
    if failed:
        again = f"xcr verify {failed[0].output}" + (f" --against {result.source}" if result.revision is None else "")
        raise OutputError(
            "; ".join(f"{v.output} failed verification ({', '.join(v.failed)})" for v in failed)
            + f"; left in place: see `{again}`"
        )


def _verify_outputs(result: Any, family: str | None) -> list[Any]:
    """xcr verify on each output of `result`, against the source it was made from. The outputs are in
    place whatever happens here: what stops a check is a failed verification (exit 1), never bad usage."""
    from ..commands.verify import verify as check

    found = []
    for o in result.outputs:
        try:
            found.append(check(o.path, result.source, revision=result.revision, family=family))
        except XcrError as e:
            raise OutputError(f"{o.path} is complete, but it could not be verified: {e.message}") from e
    return found


def _plot_path(plot: str, res: Size) -> Path:
    return Path(plot.replace("{res}", str(res))).expanduser()


def _plot_outputs(result: Any, plot: str) -> None:
    from ..commands.plot import draw

    for o in result.outputs:
        draw(_plot_path(plot, o.res), Path(o.path), Path(result.source_folder))


@app.command()
def presets(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON list on stdout.")] = False,
) -> None:
    """List the InternLM-XComposer variants and the resolution each runs its CLIP tower at."""
    from .. import presets as table

    if json_out:
        problem = _emit_json(table.as_json())
        if problem:
            raise OutputError(f"the presets could not be written to stdout: {problem}")
        return
    from rich.markup import escape
    from rich.table import Table

    grid = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("preset", "res", "grid", "note"):
        grid.add_column(column, overflow="fold")
    for p in table.PRESETS:
        grid.add_row(p.name, str(p.res), f"{p.grid}×{p.grid}", escape(p.note))
    _write(sys.stdout, _render([grid], sys.stdout) + f"source of every preset: {table.DEFAULT_MODEL}\n")


@app.command()
def inspect(
    model: Annotated[
        str, typer.Argument(metavar="PATH|REPO", help="Checkpoint folder, or Hub repo id.", show_default=False)
    ],
    revision: Revision = None,
    token: Token = None,
    family: FamilyName = None,
    plot: Annotated[
        str | None,
        typer.Option(
            "--plot",
            metavar="FILE.png",
            help="Draw its position embeddings (beside its source's, for an xcr output whose source is cached).",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Show what xcr sees in a checkpoint (grid, table, sizes, files) without converting; for a Hub
    repo, without downloading weights."""
    from ..commands.inspect import inspect as look

    try:
        if plot is not None:
            from ..commands.plot import check_path, require_matplotlib

            require_matplotlib()
            check_path(Path(plot).expanduser(), plot)
        found = look(model, revision=revision, token=token, family=family)
        if plot is not None:
            _plot_inspected(found, plot)
    except KeyboardInterrupt as e:
        raise interruption(e) from None
    if json_out:
        problem = _emit_json(found.to_json())
        if problem:
            raise OutputError(f"the --json result could not be written to stdout: {problem}")
        return
    _write(sys.stdout, _inspection(found))


def _plot_inspected(found: Any, plot: str) -> None:
    from ..commands.plot import draw, recorded_source

    if not found.weights_local:
        raise UsageError(f"--plot needs the weights on this machine, and those of {found.source} are not")
    folder = Path(found.folder)
    draw(Path(plot).expanduser(), folder, recorded_source(folder))


@app.command()
def verify(
    out: Annotated[str, typer.Argument(metavar="OUT", help="An output folder of xcr resize.", show_default=False)],
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            metavar="PATH|REPO",
            help="The source to check against. Default: the one OUT's model card records (a Hub repo).",
            show_default=False,
        ),
    ] = None,
    revision: Revision = None,
    token: Token = None,
    images: Annotated[
        str | None,
        typer.Option(
            "--images",
            metavar="DIR",
            help="Also measure the drift: each image's embedding by the source at its size vs the output's.",
            show_default=False,
        ),
    ] = None,
    family: FamilyName = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Prove an output right: files, tensors, table, configs, and a forward pass against its source."""
    from ..commands.verify import verify as check

    try:
        if json_out and _closed(sys.stdout):
            raise UsageError("--json: standard output is closed, so the result would have nowhere to go")
        found = check(out, against, revision=revision, token=token, images=images, family=family)
    except KeyboardInterrupt as e:
        raise interruption(e) from None
    if json_out:
        problem = _emit_json(found.to_json())
        if problem:
            raise OutputError(f"the --json result could not be written to stdout: {problem}")
    else:
        _write(sys.stdout, _verification(found))
    if not found.ok:
        raise OutputError(f"{found.output} failed {len(found.failed)} check(s): {', '.join(found.failed)}")


def _verification(found: Any) -> str:
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
    return _render(lines, sys.stdout)


def _inspection(found: Any) -> str:
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
    a = found.accepted_res
    rows.add_row(
        "--res accepted",
        f"{a['min']} to {a['max']} (a square's side); multiples of {a['multiple_of']} fit the patches exactly; "
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
    return _render([rows], sys.stdout)


def _size(n: int | None) -> str:
    return "size unknown" if n is None else human_bytes(n)


def _summary(result: Any) -> str:
    from rich.markup import escape

    if not result.outputs:
        return _render(["nothing to write: no conversion is needed (see the note above)"], sys.stdout)
    lines = []
    for o in result.outputs:
        done = " (up to date)" if o.up_to_date else ""
        lines.append(f"[green]✓[/green] {escape(o.path)}  [dim]{o.res.px}, {o.grid[0]}×{o.grid[1]} grid{done}[/dim]")
    lines.append(f"  from {escape(result.source)}" + (f" @ {result.revision[:12]}" if result.revision else ""))
    if result.bytes_written:
        lines.append(f"  rewritten: {escape(', '.join(result.tensors_rewritten) or 'none (grid unchanged)')}")
        lines.append(f"  {human_bytes(result.bytes_written)} in {result.seconds:.1f} s")
    return _render(lines, sys.stdout)


def _render(lines: list[Any], stream: IO[str] | None) -> str:
    """rich markup (or renderables) → text for `stream`: colours only on a terminal, no wrapping."""
    from rich.console import Console

    tty = _isatty(stream)
    buf = io.StringIO()
    console = Console(
        file=buf, force_terminal=tty, color_system="auto" if tty else None, highlight=False, soft_wrap=True,
        width=200 if not tty else None,
    )  # fmt: skip
    for line in lines:
        console.print(line)
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


class _Progress:
    """A rich byte progress bar on stderr, in binary units like the summary; nothing when silent
    or when stderr is not a terminal. Notes go to stderr. Neither can fail the run."""

    def __init__(self, silent: bool) -> None:
        self.silent = silent
        self.bar: Any = None
        self.task: Any = None
        self.broken = False

    def __enter__(self) -> _Progress:
        return self

    def update(self, done: int, total: int) -> None:
        if self.silent or self.broken or not _isatty(sys.stderr):
            return
        try:
            if self.bar is None:
                self.bar = _progress_bar()
                self.bar.start()
                self.task = self.bar.add_task("write", total=total)
            self.bar.update(self.task, completed=done, total=total)
        except Exception:  # a terminal that cannot show it: go on without a bar
            self.broken = True

    def note(self, message: str) -> None:
        if not self.silent:
            from rich.markup import escape

            _write(sys.stderr, _render([f"[yellow]note:[/yellow] {escape(message)}"], sys.stderr))

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            try:
                self.bar.stop()
            except Exception:
                pass


def _progress_bar() -> Any:
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


_RECEIVED: list[int] = []  # the signals that interrupted this run, in order


def _on_signal(signum: int, frame: object) -> None:
    """SIGINT → KeyboardInterrupt, SIGTERM → SigTerm (also a KeyboardInterrupt, so that every
    clean-up runs and no `except Exception` swallows it); remembered for `main`."""
    _RECEIVED.append(signum)
    raise SigTerm() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def _signal_handlers() -> Iterator[None]:
    """`_on_signal` for SIGINT and SIGTERM while the CLI runs (in the main thread only)."""
    if not _main_thread():
        yield
        return
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is not None:
                signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code. The only place errors turn into messages.

    `XCR_DEBUG=1` adds the traceback on stderr; the exit code and the message stay the same.
    """
    debug = os.environ.get("XCR_DEBUG", "") not in ("", "0")
    _RECEIVED.clear()
    args = sys.argv[1:] if argv is None else argv
    outer = dict(_JSON)  # a run started inside another (in process) must not take the outer's --json state
    _JSON.update(asked="--json" in args[: args.index("--")] if "--" in args else "--json" in args, written=False)
    try:
        return _main(args, argv, debug)
    finally:
        _JSON.update(outer)


def _main(args: list[str], argv: list[str] | None, debug: bool) -> int:
    with _signal_handlers():
        try:
            _refuse_repeated_options(sys.argv[1:] if argv is None else argv)
            with cli_spelling():
                rv = app(args=argv, prog_name="xcr", standalone_mode=False)
            if rv == 130 and _RECEIVED:  # typer turned an interruption while parsing into a quiet 130
                return _fail(interruption(SigTerm() if _RECEIVED[-1] == signal.SIGTERM else KeyboardInterrupt()))
            return rv if isinstance(rv, int) else 0
        except XcrError as e:
            return _fail(e, debug)
        except KeyboardInterrupt as e:  # before or after the command itself ran
            return _fail(interruption(e), debug)
        except typer.Abort:
            return _fail(XcrError("aborted"), debug)
        except typer.TyperException as e:  # click's usage errors: bad flag, bad value, missing option
            if type(e).__name__ == "NoArgsIsHelpError":  # `xcr` alone: the help, as click shows it (typer
                # vendors click, so the class is matched by name)
                _write(sys.stderr, e.format_message() + "\n")
                return 2
            ctx = getattr(e, "ctx", None)
            where = ctx.command_path if ctx is not None and ctx.command_path else "xcr"
            error = UsageError(f"{e.format_message()} (see {where} --help)")
            error.exit_code = int(getattr(e, "exit_code", 2))
            return _fail(error, debug)
        except Exception as e:
            message = f"unexpected {type(e).__name__}: {e}; rerun with XCR_DEBUG=1 and report it"
            return _fail(XcrError(message), debug)


def _refuse_repeated_options(argv: list[str]) -> None:
    """A flag that takes one value, given twice, is an error: click would keep the last one silently."""
    import typer.main

    group: Any = typer.main.get_command(app)
    command = next((group.commands[a] for a in argv if a in group.commands), None)
    if command is None:
        return
    single = {
        o: p
        for p in command.params
        if p.param_type_name == "option" and not p.multiple and not getattr(p, "is_flag", False)
        for o in p.opts
    }  # options only: an argument's "opts" is its name, which a value may equal (xcr verify out --against out)
    counts: dict[str, int] = {}
    args = iter(argv[argv.index(command.name) + 1 :])
    for a in args:
        if a == "--":
            break
        param = single.get(a.split("=", 1)[0] if a.startswith("--") else a)
        if param is not None:
            counts[param.opts[0]] = counts.get(param.opts[0], 0) + 1
            if "=" not in a:
                next(args, None)  # its value, whatever it looks like
    for flag, n in counts.items():
        if n > 1:
            raise UsageError(f"{flag} is given {n} times; give it once")


def _fail(error: XcrError, debug: bool = False) -> int:
    """Print `error` as one line (after the traceback, with XCR_DEBUG=1); return its exit code."""
    if debug:
        import traceback

        _write(sys.stderr, traceback.format_exc())
    _error(error.message)
    _json_error(error)
    return error.exit_code


def run() -> NoReturn:
    """The console script: `main()`, then exit without tearing the interpreter down.

    Where torch was imported in this process (`--device cuda`, a `.bin` only torch can read),
    Python's shutdown spends ~0.4 s dismantling its modules; nothing of ours needs that: every
    file is closed and the output is in place when `main` returns.
    Exit handlers still run and the standard streams are flushed.
    """
    _guard_standard_fds()
    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _guard_standard_fds() -> None:
    """Put /dev/null on a closed fd 0, 1 or 2, so that no file this run opens lands on it (and
    nothing meant for the terminal is written into an output file). Python already set the
    matching sys stream to None, which `_write` treats as closed."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _closed(stream: IO[str] | None) -> bool:
    if stream is None:
        return True
    try:
        os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return not hasattr(stream, "getvalue")  # an in-memory stream (tests) is open
    return False


def _isatty(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


def _write(stream: IO[str] | None, text: str) -> str | None:
    """Write `text` as far as the stream's encoding can show it; return why it failed, or None."""
    if stream is None:
        return "it is closed"
    try:
        stream.write(printable(text, getattr(stream, "encoding", None)))
        stream.flush()
    except (OSError, ValueError) as e:
        return (e.strerror if isinstance(e, OSError) else None) or str(e) or type(e).__name__
    return None


def _error(message: str) -> None:
    _write(sys.stderr, f"xcr: error: {' '.join(message.split())}\n")


_JSON = {"asked": False, "written": False}  # this run's --json: asked for, and its object written


def _emit_json(data: Any) -> str | None:
    """Write a --json result (an object gets `"ok": true` unless it says): the one writer of JSON
    on stdout, so that a failure after it never adds a second object. Returns why it failed, or None."""
    if isinstance(data, dict):
        data = {"ok": True, **data}
    _JSON["written"] = True
    return _write(sys.stdout, json.dumps(data) + "\n")


def _json_error(error: XcrError) -> None:
    """A failed --json run: one object on stdout saying so, unless the result was written already."""
    if _JSON["asked"] and not _JSON["written"]:
        _emit_json({"ok": False, "error": " ".join(error.message.split()), "exit_code": error.exit_code})
