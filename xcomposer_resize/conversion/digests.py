"""Content digests of weight files, computed in parallel and while the file is being written; and,
for weight files made of copies of the source's tensors, the proof that they still are.

A weight file's digest is `sha256x64m:` and the SHA-256 of the SHA-256 digests of its 64 MiB blocks,
in order. It changes with any byte of the file, as a plain SHA-256 does, but its blocks can be hashed
in any order and on every core: while a conversion writes a file, each block is hashed as soon as
every byte of it is written, so most of the hashing overlaps the copy and torch's import, and a re-run
checks a multi-GB output at the speed of every core together.

A weight file whose tensors are all copies of the source's (or rewritten tables, digested apart) is
not hashed at all: reading bytes the file system shares with the source would cost what sharing
saves. Its digest is `copies+sha256:` and the SHA-256 of its header, and a re-run proves the rest by
comparing each tensor with the source's tensor of that name (`first_difference`): bytes that lie in
the same disk blocks in both files are the same bytes (FIEMAP); the others are read and compared.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..checkpoint import extents

BLOCK = 64 << 20
READ = 8 << 20
PREFIX = "sha256x64m:"
COPIES = "copies+sha256:"


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


def header_digest(path: Path) -> str:
    """`copies+sha256:` and the SHA-256 of the safetensors header of `path` (length and JSON). Raises OSError."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise OSError("the file is shorter than a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise OSError("its header length is over the format's cap")
        return COPIES + hashlib.sha256(head + f.read(n)).hexdigest()


Span = tuple[int, Path, int, int]  # (offset in the output, source file, offset in it, length)


def first_difference(path: Path, spans: list[Span]) -> int | None:
    """The index of the first span whose bytes in the file at `path` differ from its source's (or
    cannot be read), or None when every span is equal. Shared disk blocks are equal without reading."""
    fd = os.open(path, os.O_RDONLY)
    sources: dict[Path, int] = {}
    try:
        mine = extents.extents(fd, sync=True) if extents.shared_bytes(path) else None
        maps: dict[Path, list[extents.Extent] | None] = {}
        jobs: list[tuple[int, int, int, int, int]] = []  # (span, output offset, source fd, source offset, length)
        for k, (off, src, src_off, n) in enumerate(spans):
            if src not in sources:
                sources[src] = os.open(src, os.O_RDONLY)
                maps[src] = extents.extents(sources[src], sync=True) if mine else None
            done = 0
            theirs = maps[src]
            same = extents.same_blocks(mine, off, theirs, src_off, n) if mine and theirs else []
            for lo, hi in [*same, (n, n)]:
                jobs += [(k, off + a, sources[src], src_off + a, min(READ, lo - a)) for a in range(done, lo, READ)]
                done = max(done, hi)
        with _pool() as pool:
            for (k, *_), equal in zip(jobs, pool.map(lambda j: _equal(fd, *j[1:]), jobs), strict=True):
                if not equal:
                    return k
        return None
    except OSError:
        return 0
    finally:
        os.close(fd)
        for src_fd in sources.values():
            os.close(src_fd)


def _equal(fd: int, off: int, src_fd: int, src_off: int, n: int) -> bool:
    mine = os.pread(fd, n, off)
    return len(mine) == n and mine == os.pread(src_fd, n, src_off)
