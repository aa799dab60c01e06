"""The `xcr` command: parse flags, call one library function, render the result with rich.

`main()` is the one place where errors become messages: one line on stderr, exit code 2 for bad
usage or input, 1 otherwise, 130 on Ctrl-C. `XCR_DEBUG=1` shows the traceback instead.
"""

from __future__ import annotations

import atexit
import enum
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from . import __version__
from .errors import Interrupted, SigTerm, Terminated, XcrError

DEFAULT_MODEL = "openai/clip-vit-large-patch14-336"

app = typer.Typer(
    name="xcr",
    help="Resize CLIP vision checkpoints to a new input resolution, exactly, ready for fine-tuning.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Mode(str, enum.Enum):
    bicubic = "bicubic"
    bilinear = "bilinear"
    nearest = "nearest"
    area = "area"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xcr {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Resize CLIP vision checkpoints to a new input resolution, exactly, ready for fine-tuning."""


@app.command()
def resize(
    res: Annotated[
        int,
        typer.Option(
            "--res",
            "-r",
            help="Target input size in pixels: a multiple of the patch size (14 for ViT-L/14), e.g. 224 or 490.",
            show_default=False,
        ),
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="Checkpoint folder, or Hub repo id.")] = DEFAULT_MODEL,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder. Default: the source's name with its resolution replaced, in the current folder.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing output (only once the new one is complete).")
    ] = False,
    device: Annotated[
        Device,
        typer.Option(
            "--device",
            help="Where to interpolate. cpu is bit-exact with transformers; CUDA's bicubic differs by up to 1 ulp. auto picks CUDA when present.",
        ),
    ] = Device.cpu,
    mode: Annotated[
        Mode,
        typer.Option(
            "--mode",
            help="Interpolation. bicubic equals XComposer's resize_pos and transformers' interpolate_pos_encoding.",
        ),
    ] = Mode.bicubic,
    antialias: Annotated[
        bool,
        typer.Option(
            "--antialias", help="Antialiased bicubic/bilinear (timm's and open_clip's default; changes numbers)."
        ),
    ] = False,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Hub branch, tag or commit (default main).", show_default=False)
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Hub token (default: HF_TOKEN or the saved login). Never printed or saved.",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout; no progress.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary.")] = False,
) -> None:
    """Write a copy of a CLIP checkpoint whose position embeddings and configs are for --res pixels."""
    from .convert import resize as do_resize

    silent = quiet or json_out
    try:
        with _Progress(silent) as progress:
            result = do_resize(
                model, res, out, force=force, device=device.value, mode=mode.value, antialias=antialias,
                revision=revision, token=token, quiet=silent, on_progress=progress.update, on_note=progress.note,
            )  # fmt: skip
    except KeyboardInterrupt as e:
        raise _stopped(e) from None
    if json_out:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
    elif not quiet:
        _summary(result)


def _summary(result: Any) -> None:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    rewritten = ", ".join(result.tensors_rewritten) or "none (grid unchanged)"
    for o in result.outputs:
        console.print(f"[green]✓[/green] {o.path}  [dim]{o.res} px, {o.grid[0]}×{o.grid[1]} grid[/dim]")
    console.print(f"  from {result.source}" + (f" @ {result.revision[:12]}" if result.revision else ""))
    console.print(f"  rewritten: {rewritten}")
    console.print(f"  {result.bytes_written / 2**20:,.1f} MiB in {result.seconds:.1f} s")


class _Progress:
    """A rich byte progress bar on stderr; nothing when silent or when stderr is not a terminal."""

    def __init__(self, silent: bool) -> None:
        self.silent = silent
        self.bar: Any = None
        self.task: Any = None
        self.console: Any = None

    def __enter__(self) -> _Progress:
        if not self.silent:
            from rich.console import Console

            self.console = Console(stderr=True, highlight=False)
        return self

    def update(self, done: int, total: int) -> None:
        if self.silent or not self.console.is_terminal:
            return
        if self.bar is None:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.bar = Progress(
                TextColumn("writing"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                console=self.console, transient=True,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("write", total=total)
        self.bar.update(self.task, completed=done, total=total)

    def note(self, message: str) -> None:
        if not self.silent:
            self.console.print(f"[yellow]note:[/yellow] {message}")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _on_sigterm(signum: int, frame: object) -> None:
    raise SigTerm()


def _stopped(e: KeyboardInterrupt) -> Interrupted:
    """The error for Ctrl-C (exit 130) or SIGTERM (exit 143)."""
    if isinstance(e, SigTerm):
        return Terminated("terminated (SIGTERM); nothing was written")
    return Interrupted("interrupted; nothing was written")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code. The only place errors turn into messages."""
    debug = os.environ.get("XCR_DEBUG", "") not in ("", "0")
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        rv = app(args=argv, prog_name="xcr", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except XcrError as e:
        if debug:
            raise
        _error(e.message)
        return e.exit_code
    except KeyboardInterrupt as e:  # before or after the command itself ran
        if debug:
            raise
        stopped = _stopped(e)
        _error(stopped.message)
        return stopped.exit_code
    except typer.Abort:
        _error("aborted")
        return 1
    except typer.TyperException as e:  # click's usage errors: bad flag, bad value, missing option
        if debug:
            raise
        _error(f"{e.format_message()} (see xcr --help)")
        return int(getattr(e, "exit_code", 2))
    except Exception as e:
        if debug:
            raise
        _error(f"unexpected {type(e).__name__}: {e}; rerun with XCR_DEBUG=1 and report it")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run() -> NoReturn:
    """The console script: `main()`, then exit without tearing the interpreter down.

    Where torch was imported in this process (`--device cuda`, a `.bin` only torch can read),
    Python's shutdown spends ~0.4 s dismantling its modules; nothing of ours needs that: every
    file is closed and the output is in place when `main` returns.
    Exit handlers still run and the standard streams are flushed.
    """
    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _error(message: str) -> None:
    sys.stderr.write(f"xcr: error: {' '.join(message.split())}\n")
    sys.stderr.flush()
