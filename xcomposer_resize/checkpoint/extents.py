"""Where a file's bytes lie on disk (Linux FIEMAP): how many of them it shares with other files
(copy-on-write clones on XFS, btrfs), and whether two byte ranges are the very same disk blocks.

Every function answers "nothing known" (0, or no ranges) where FIEMAP is missing or refused
(another OS, tmpfs, some network file systems): callers then fall back to reading the bytes.
"""

from __future__ import annotations

import fcntl
import os
import struct
from dataclasses import dataclass

FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap)
FIEMAP_FLAG_SYNC = 0x1  # write dirty pages back first: the map then says what the file holds
EXTENT_LAST = 0x1
EXTENT_SHARED = 0x2000
# extents whose blocks do not (yet) hold the file's bytes as they are: never taken as proof
EXTENT_UNSURE = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800  # unknown, delalloc, encoded, …
_HEAD = struct.Struct("=QQLLLL")
_EXTENT = struct.Struct("=QQQQQLLLL")
_BATCH = 256


@dataclass(frozen=True)
class Extent:
    """`length` bytes of the file from `logical` lie on disk at `physical`."""

    logical: int
    physical: int
    length: int
    flags: int


def extents(fd: int, sync: bool = False) -> list[Extent] | None:
    """The extents of the open file `fd`, or None where FIEMAP is not available."""
    found: list[Extent] = []
    start = 0
    while True:
        request = bytearray(_HEAD.pack(start, (1 << 64) - 1 - start, FIEMAP_FLAG_SYNC if sync else 0, 0, _BATCH, 0))
        request += bytes(_EXTENT.size * _BATCH)
        try:
            fcntl.ioctl(fd, FS_IOC_FIEMAP, request)
        except OSError:
            return None
        mapped = _HEAD.unpack_from(request)[3]
        for k in range(mapped):
            logical, physical, length, _, _, flags, *_ = _EXTENT.unpack_from(request, _HEAD.size + k * _EXTENT.size)
            found.append(Extent(logical, physical, length, flags))
        if mapped == 0 or found[-1].flags & EXTENT_LAST:
            return found
        start = found[-1].logical + found[-1].length


def shared_bytes(path: os.PathLike[str] | str) -> int:
    """How many bytes of the file at `path` lie in blocks it shares with another file (0 when unknown).

    A block written into after it was cloned is still mapped shared until it is written back, so a
    file with shared blocks is written back and mapped again (that writes only its own few bytes; a
    file without any, on ext4 say, is never flushed here)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return 0
    try:
        size = os.fstat(fd).st_size
        found = extents(fd) or []
        if any(e.flags & EXTENT_SHARED for e in found):
            found = extents(fd, sync=True) or []
    finally:
        os.close(fd)
    return sum(max(0, min(e.logical + e.length, size) - e.logical) for e in found if e.flags & EXTENT_SHARED)


def same_blocks(a: list[Extent], a_off: int, b: list[Extent], b_off: int, length: int) -> list[tuple[int, int]]:
    """The parts of a range of `length` bytes, from `a_off` in one file and `b_off` in another (their
    extents `a` and `b`, read with sync), that lie in the same disk blocks in both: (start, end)
    relative to the range. Bytes in the same blocks are the same bytes."""
    out: list[tuple[int, int]] = []
    for ea in a:
        lo, hi = max(ea.logical, a_off), min(ea.logical + ea.length, a_off + length)
        if lo >= hi or ea.flags & EXTENT_UNSURE:
            continue
        for eb in b:
            if eb.flags & EXTENT_UNSURE:
                continue
            # the bytes of `a` at lo..hi sit at physical ea.physical + (x - ea.logical)
            blo = max(lo - a_off + b_off, eb.logical)
            bhi = min(hi - a_off + b_off, eb.logical + eb.length)
            if blo >= bhi:
                continue
            if ea.physical + (blo - b_off + a_off - ea.logical) == eb.physical + (blo - eb.logical):
                out.append((blo - b_off, bhi - b_off))
    return sorted(out)
