"""One error hierarchy. Each error carries its exit code and a one-line message.

The library raises these; `cli.main` is the one place that turns them into text on stderr.
Exit codes: 2 for bad usage or bad input (the user must change something they gave us),
1 for everything else (the network, the disk, the hub, a bug).

Messages name arguments the way the caller gave them: `--res 500` on the command line,
`res=500` from Python. `arg()` spells them; the CLI switches the spelling with `cli_spelling()`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from contextvars import ContextVar

_CLI: ContextVar[bool] = ContextVar("xcr_cli_spelling", default=False)
_UNSET = object()


def arg(name: str, value: object = _UNSET) -> str:
    """A parameter as the caller spells it: `arg("res", 500)` is `--res 500` from the CLI and
    `res=500` from Python; `arg("force", True)` is `--force` / `force=True`; `arg("out")` is
    `--out` / `out`."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if _CLI.get():
        flag = "--" + name.replace("_", "-")
        return flag if value is _UNSET or value is True else f"{flag} {value}"
    return name if value is _UNSET else f"{name}={value!r}"


@contextlib.contextmanager
def cli_spelling() -> Iterator[None]:
    """Within this block, `arg()` spells parameters as command-line flags."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


class XcrError(Exception):
    """Base of every error xcr reports. `str(err)` is the one-line message."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(XcrError):
    """A flag or argument the user gave is invalid (bad --res, --mode, --device, --out)."""

    exit_code = 2


class InputError(XcrError):
    """The source checkpoint is missing, malformed, damaged, unreadable, unsafe or unsupported."""

    exit_code = 2


class HubError(XcrError):
    """The Hugging Face Hub could not give us the source (not found, gated, offline, unreachable)."""

    exit_code = 1


class RepoIdError(HubError):
    """A repo id that is not of the form `owner/name`."""

    exit_code = 2


class OutputError(XcrError):
    """The output could not be written (disk full, permissions, rename failed, taken by another run)."""

    exit_code = 1


class Interrupted(XcrError):
    """Ctrl-C stopped the run; nothing was left behind."""

    exit_code = 130


class Terminated(Interrupted):
    """SIGTERM stopped the run; nothing was left behind."""

    exit_code = 143


class SigTerm(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM handler. Like Ctrl-C's KeyboardInterrupt it is no Exception,
    so no `except Exception` on the way swallows it, and every clean-up runs."""


def stopped(e: KeyboardInterrupt, completed: list[str], what: str) -> KeyboardInterrupt:
    """`e` (Ctrl-C or SIGTERM), saying which outputs are complete and `what` was not done: the
    library stays interruptible as Python is, and `interruption` words it."""
    e.completed = tuple(completed)  # type: ignore[attr-defined]
    e.what = what  # type: ignore[attr-defined]
    return e


def interruption(e: KeyboardInterrupt, completed: list[str] | None = None, what: str = "") -> Interrupted:
    """The error for Ctrl-C (exit 130) or SIGTERM (exit 143), saying which outputs are complete
    (`completed`, or what the library attached to `e`) and `what` else happened (likewise)."""
    done = completed or list(getattr(e, "completed", ()))
    what = what or str(getattr(e, "what", ""))
    left = f"{complete(done)}; {what or 'nothing else was written'}" if done else "nothing was written"
    if isinstance(e, SigTerm):
        return Terminated(f"terminated (SIGTERM); {left}")
    return Interrupted(f"interrupted; {left}")


def complete(paths: list[str]) -> str:
    """`OUT is complete`, `A, B are complete` (`nothing was written` for none)."""
    if not paths:
        return "nothing was written"
    return f"{', '.join(paths)} {'is' if len(paths) == 1 else 'are'} complete"


RECEIVED: list[int] = []  # the signals that interrupted this run, in order


def on_signal(signum: int, frame: object) -> None:
    """The handler of SIGINT and SIGTERM while xcr runs: SIGINT → KeyboardInterrupt, SIGTERM →
    SigTerm (also a KeyboardInterrupt, so that every clean-up runs and no `except Exception`
    swallows it); remembered in RECEIVED."""
    RECEIVED.append(signum)
    raise SigTerm() if signum == signal.SIGTERM else KeyboardInterrupt()
