"""One error hierarchy. Each error carries its exit code and a one-line message.

The library raises these; `cli.main` is the one place that turns them into text on stderr.
Exit codes: 2 for bad usage or bad input (the user must change something they gave us),
1 for everything else (the network, the disk, the hub, a bug).
"""

from __future__ import annotations


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
    """The source checkpoint is missing, malformed, damaged, unsafe or unsupported."""

    exit_code = 2


class HubError(XcrError):
    """The Hugging Face Hub could not give us the source (not found, gated, offline, unreachable)."""

    exit_code = 1


class RepoIdError(HubError):
    """A repo id that is not of the form `owner/name`."""

    exit_code = 2


class OutputError(XcrError):
    """The output could not be written (disk full, permissions, rename failed)."""

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
