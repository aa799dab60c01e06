"""Delivering a command's result: the one writer of JSON on stdout, and the context that turns Ctrl-C
or SIGTERM inside a command into the error that says what is complete."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

from ..errors import OutputError, UsageError, XcrError, complete, interruption, stopped
from .render import closed, write

JSON = {"asked": False, "written": False}  # this run's --json: asked for, and its object written


def json_asked(stream: IO[str] | None) -> None:
    """Refuse, before any work, a --json run whose result would have nowhere to go."""
    if JSON["asked"] and closed(stream):
        raise UsageError("--json: standard output is closed, so the result would have nowhere to go")


@contextlib.contextmanager
def interruptions() -> Iterator[None]:
    """Around every command: Ctrl-C or SIGTERM becomes the one error that says what is complete and
    what was not done (typer would turn it into a silent exit 130)."""
    try:
        yield
    except KeyboardInterrupt as e:
        raise interruption(e) from None


def deliver_json(data: Any, outputs: list[str]) -> None:
    """Write a --json result, the one writer of JSON on stdout (so a failure after it never adds a
    second object). It is the result: when it cannot be written (or Ctrl-C cuts it short), the run
    fails and says that `outputs` are complete all the same."""
    JSON["written"] = True
    try:
        problem = write(sys.stdout, json.dumps(data) + "\n")
    except KeyboardInterrupt as e:
        raise stopped(e, outputs, "its --json result was not written") from None
    if problem:
        done = f"{complete(outputs)}, but the" if outputs else "the"
        raise OutputError(f"{done} --json result could not be written to stdout: {problem}")


def deliver(text: Callable[[], str]) -> None:
    """Show a result (`text` renders it): whatever happens now (a closed or full terminal, Ctrl-C),
    the run is done."""
    with contextlib.suppress(KeyboardInterrupt):
        write(sys.stdout, text())


def json_error(error: XcrError) -> None:
    """A failed --json run: one object on stdout saying so, unless the result was written already."""
    if JSON["asked"] and not JSON["written"]:
        JSON["written"] = True
        write(
            sys.stdout,
            json.dumps({"ok": False, "error": " ".join(error.message.split()), "exit_code": error.exit_code}) + "\n",
        )
