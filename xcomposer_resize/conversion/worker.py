"""Resample position tables in a child process, so that importing torch (~1.2 s) never holds
this process's GIL while it copies bytes.

The child (`python -c CHILD`, which calls `main()`) imports torch as soon as it starts, then serves
requests on stdin until EOF: one JSON line, then the table's raw bytes; it answers with one JSON
line, then the new table's raw bytes (or `{"error": ...}`). It knows no files: the parent reads
the table from the checkpoint and writes the answer into the output. The math is
`interpolate.resample_grid`, the same function the in-process path calls.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import threading

from ..errors import OutputError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

# `xcr resize` imports this module first thing, to start the child: every module imported here delays
# torch's import, which every conversion waits for. So typing, json, tempfile, pathlib and the child's own
# modules (dtypes, interpolate) are imported where they are used.

# The child runs this very copy of xcomposer_resize (a source checkout need not be on sys.path),
# and not whatever a `torch/` or `xcomposer_resize/` folder in the current directory holds. It imports
# torch first, the import every conversion waits for: the standard modules this one needs come with it.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
CHILD = f"""
import sys
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]
import torch
if {PACKAGE_ROOT!r} not in sys.path:
    sys.path.insert(0, {PACKAGE_ROOT!r})
from xcomposer_resize.conversion.worker import main
main()
"""


class Worker:
    """The parent's handle on one worker process (start it early, ask it late)."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
        self.proc = proc
        self.stderr = stderr

    @classmethod
    def start(cls) -> Worker | None:
        """Start a worker that begins importing torch at once; None if no process can be started."""
        stderr = _scratch_file()  # never a pipe: nobody reads it until the worker fails
        try:
            proc = subprocess.Popen(  # in "/": it needs no folder, and the caller's may be gone
                [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd="/"
            )
        except OSError:
            stderr.close()
            return None
        return cls(proc, stderr)

    def resample(self, request: dict[str, Any], table: bytes | bytearray | memoryview) -> bytearray:
        """Send one table; return the resampled table's bytes. Raises OutputError if the worker fails."""
        import json

        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({**request, "nbytes": len(table)}).encode() + b"\n")
            send(self.proc.stdin, table)
            self.proc.stdin.flush()
            reply = json.loads(self.proc.stdout.readline() or b"null")
            if isinstance(reply, dict) and "nbytes" in reply:
                data = receive(self.proc.stdout, reply["nbytes"])
                if len(data) == reply["nbytes"]:
                    return data
        except (OSError, ValueError):
            reply = None
        raise OutputError(
            f"resampling the position table failed in the torch worker ({self._why(reply)}); "
            "check that torch imports in this Python"
        )

    def _why(self, reply: Any) -> str:
        if isinstance(reply, dict) and "error" in reply:
            return str(reply["error"])
        self.close(wait=True)
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"the worker process exited with {self.proc.returncode}"

    def close(self, wait: bool = False) -> None:
        """End the worker: it exits at EOF on its stdin. `wait`: until it has; else a daemon thread reaps
        it (a process with torch loaded takes 30–60 ms to tear down, which no output waits for), killing
        it if it has not exited within 5 s."""
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(OSError):
                    pipe.close()
        if wait:
            _reap(self.proc)  # its stderr stays readable, for the error that says why it failed
            return
        self.stderr.close()
        if self.proc.poll() is None:
            threading.Thread(target=_reap, args=(self.proc,), name="xcr-worker-reaper", daemon=True).start()

    def kill(self) -> None:
        """Stop at once (on errors and interruptions)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.close(wait=True)
        self.stderr.close()


def _scratch_file() -> IO[bytes]:
    """An anonymous file for the worker's stderr: in memory where Linux offers one (no tempfile import,
    no file system), else a temporary file."""
    if hasattr(os, "memfd_create"):
        with contextlib.suppress(OSError):
            return open(os.memfd_create("xcr-worker-stderr", os.MFD_CLOEXEC), "w+b")
    import tempfile

    return tempfile.TemporaryFile()


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_early: Worker | None = None  # started by the command line before it knew it needs one


def start_early() -> None:
    """Start a worker now, before the command has imported or planned anything: `xcr resize` does,
    so that torch's import overlaps the CLI's own imports and the plan too (on a copy-on-write file
    system the copy takes no time, and these ~0.4 s would be all of xcr's time beyond torch's).
    `take()` hands it out; one nobody took is killed at exit."""
    global _early
    if _early is None:
        _early = Worker.start()
        if _early is not None:
            atexit.register(discard_early)


def take() -> Worker | None:
    """The early worker, or a new one."""
    global _early
    worker, _early = _early, None
    return worker or Worker.start()


def discard_early() -> None:
    """Kill the early worker, when nobody needs it (an up-to-date output, a cast done in process)."""
    global _early
    worker, _early = _early, None
    if worker is not None:
        worker.kill()


CHUNK = 256 << 20  # a pipe moves at most 2 GiB per call on Linux (and less elsewhere): move tables in chunks


def send(f: IO[bytes], data: bytes | bytearray | memoryview) -> None:
    """Write all of `data`, a chunk at a time."""
    view = memoryview(data).cast("B")
    for i in range(0, len(view), CHUNK):
        f.write(view[i : i + CHUNK])


def receive(f: IO[bytes], n: int) -> bytearray:
    """Read `n` bytes (fewer at end of file), a chunk at a time."""
    out = bytearray()
    while len(out) < n:
        part = f.read(min(CHUNK, n - len(out)))
        if not part:
            break
        out += part
    return out


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The worker's loop: answer requests until EOF."""
    import json

    from ..checkpoint.dtypes import tensor_bytes, tensor_from_bytes, torch_dtype
    from ..interpolate import resample_grid

    while line := stdin.readline():
        try:
            req = json.loads(line)
            data = receive(stdin, req["nbytes"])
            pos = tensor_from_bytes(data, req["dtype"], tuple(req["shape"]))
            new = resample_grid(
                pos,
                tuple(req["new_grid"]),
                req["prefix"],
                tuple(req["old_grid"]),
                req["mode"],
                req["antialias"],
                req["device"],
                torch_dtype(req.get("out_dtype", req["dtype"])),
            )
            out = bytes(tensor_bytes(new.contiguous()))
            header = {"nbytes": len(out), "shape": list(new.shape)}
        except Exception as e:  # reported to the parent, which turns it into one error line
            stdout.write(json.dumps({"error": f"{type(e).__name__}: {e}"}).encode() + b"\n")
            stdout.flush()
            return
        stdout.write(json.dumps(header).encode() + b"\n")
        send(stdout, out)
        stdout.flush()


def main() -> None:
    """The worker process: serve stdin/stdout, then exit at once."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills us
    serve(sys.stdin.buffer, sys.stdout.buffer)
    sys.stdout.flush()
    os._exit(0)  # the parent waits for us: skip the ~0.4 s of tearing torch's modules down


if __name__ == "__main__":
    main()
