"""Content digests of weight files, computed in parallel and while the file is being written.

A weight file's digest is `sha256x64m:` and the SHA-256 of the SHA-256 digests of its 64 MiB blocks,
in order. It changes with any byte of the file, as a plain SHA-256 does, but its blocks can be hashed
in any order and on every core: while a conversion writes a file, each block is hashed as soon as
every byte of it is written, so most of the hashing overlaps the copy and torch's import, and a re-run
checks a multi-GB output at the speed of every core together.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

BLOCK = 64 << 20
READ = 8 << 20
PREFIX = "sha256x64m:"


def _block_digest(fd: int, start: int, end: int) -> bytes:
    h = hashlib.sha256()
    at = start
    while at < end:
        data = os.pread(fd, min(READ, end - at), at)
        if not data:
            raise OSError(f"the file became shorter while it was being hashed (at byte {at})")
        h.update(data)
        at += len(data)
    return h.digest()


def _combine(blocks: list[bytes]) -> str:
    return PREFIX + hashlib.sha256(b"".join(blocks)).hexdigest()


def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="xcr-digest")


def file_digest(path: Path) -> str:
    """The block digest of the file at `path` (its blocks hashed on every core). Raises OSError."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        starts = range(0, max(size, 1), BLOCK)
        with _pool() as pool:
            futures = [pool.submit(_block_digest, fd, s, min(s + BLOCK, size)) for s in starts]
            return _combine([f.result() for f in futures])
    finally:
        os.close(fd)


class WriteDigest:
    """The block digest of a file as it is written: `written(start, end)` says a byte range is final;
    each block is hashed in a background thread once all of it is. `result()` waits for the rest."""

    def __init__(self, path: Path, size: int, pool: ThreadPoolExecutor) -> None:
        self.path = path
        self.size = size
        self.pool = pool
        self.fd = -1  # opened at the first report: the file exists by then
        self.missing = [min(BLOCK, size - s) for s in range(0, max(size, 1), BLOCK)]  # bytes not yet written
        self.futures: dict[int, Future[bytes]] = {}
        self.lock = threading.Lock()

    def written(self, start: int, end: int) -> None:
        """Bytes [start, end) of the file are written and will not change."""
        with self.lock:
            if self.fd < 0:
                self.fd = os.open(self.path, os.O_RDONLY)
            first, last = start // BLOCK, (max(end, start + 1) - 1) // BLOCK
            for b in range(first, min(last, len(self.missing) - 1) + 1):
                lo, hi = max(start, b * BLOCK), min(end, (b + 1) * BLOCK, self.size)
                self.missing[b] -= max(0, hi - lo)
                if self.missing[b] <= 0 and b not in self.futures:
                    blo, bhi = b * BLOCK, min((b + 1) * BLOCK, self.size)
                    self.futures[b] = self.pool.submit(_block_digest, self.fd, blo, bhi)

    def result(self) -> str:
        """The file's digest, once every byte was reported written. Closes the file."""
        try:
            if len(self.futures) != len(self.missing):
                raise AssertionError(f"{len(self.missing) - len(self.futures)} block(s) were never reported written")
            return _combine([self.futures[b].result() for b in range(len(self.missing))])
        finally:
            self.close()

    def close(self) -> None:
        """Stop hashing and close the file (after the reads under way)."""
        for f in self.futures.values():
            f.cancel()
        for f in self.futures.values():
            if not f.cancelled():
                f.exception()  # wait: the fd must outlive every read
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def pool() -> ThreadPoolExecutor:
    """A thread pool for WriteDigest (one per conversion; shut it down when done)."""
    return _pool()
