"""The `xcr` program around the commands: `main()` is the one place errors become messages, one
signal handler turns SIGINT and SIGTERM into interruptions, one writer puts JSON on stdout.

Once an output has landed, nothing about printing turns the run into a failure: text the terminal
cannot encode is shown in ASCII, and a closed or full stdout only loses the summary. The one
exception is `--json`, whose output is the result: if it cannot be written, the run fails and says so.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import typer

from ..errors import (
    RECEIVED,
    SigTerm,
    UsageError,
    XcrError,
    cli_spelling,
    interruption,
    on_signal,
)
from .app import app
from .deliver import JSON, json_error
from .render import error_line, write


@contextlib.contextmanager
def _signal_handlers() -> Iterator[None]:
    """`errors.on_signal` for SIGINT and SIGTERM while the CLI runs (in the main thread only)."""
    if not _main_thread():
        yield
        return
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
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
    RECEIVED.clear()
    args = sys.argv[1:] if argv is None else argv
    outer = dict(JSON)  # a run started inside another (in process) must not take the outer's --json state
    JSON.update(asked="--json" in args[: args.index("--")] if "--" in args else "--json" in args, written=False)
    try:
        return _main(args, argv, debug)
    finally:
        JSON.update(outer)


def _main(args: list[str], argv: list[str] | None, debug: bool) -> int:
    with _signal_handlers():
        try:
            _refuse_repeated_options(sys.argv[1:] if argv is None else argv)
            with cli_spelling():
                rv = app(args=argv, prog_name="xcr", standalone_mode=False)
            if rv == 130 and RECEIVED:  # typer turned an interruption while parsing into a quiet 130
                return _fail(interruption(SigTerm() if RECEIVED[-1] == signal.SIGTERM else KeyboardInterrupt()))
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
                write(sys.stderr, e.format_message() + "\n")
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

        write(sys.stderr, traceback.format_exc())
    error_line(error.message)
    json_error(error)
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
