"""Safetensors files at the byte level: read and validate headers, write files by copying
untouched byte ranges straight from the source and filling in the few new tensors.

Nothing here imports torch at module level, and nothing here knows about the CLI.
Format: 8-byte little-endian header length N, N bytes of JSON, then the data section.
Each header entry is {"dtype", "shape", "data_offsets": [begin, end]} relative to the data
section; entries must tile the data section exactly (no overlap, no hole, nothing past the end).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .dtypes import DTYPE_SIZES, Buffer, nbytes_of, tensor_bytes, torch_dtype

if TYPE_CHECKING:
    pass

MAX_HEADER_BYTES = 100_000_000  # the format's own cap
METADATA = {"format": "pt"}
ALIGN = 4096  # copied bytes keep their source offsets modulo this: the block size of XFS, btrfs, ext4, APFS
ANCHOR_BYTES = 64 << 10  # a run of copied tensors at least this large is laid out to keep its alignment
MAX_ANCHORS = 8
KERNEL_CHUNK = 64 << 20  # per copy_file_range call: no memory, few GIL round trips, and blocks to hash early
BUFFER_CHUNK = 8 << 20  # per pread/pwrite of the fallback: bounds memory

Progress = Callable[[int], None]  # called with the number of bytes just written
Written = Callable[[int, int], None]  # called with a byte range [start, end) of a file once it is final


@dataclass(frozen=True)
class TensorEntry:
    """One tensor stored in a file (safetensors, or a torch zip archive); `start`/`end` are
    absolute byte offsets in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsFile:
    """A validated safetensors header: the tensors sorted by offset, and the metadata."""

    path: Path
    size: int
    tensors: list[TensorEntry]
    metadata: dict[str, str]


def read_header(path: Path) -> SafetensorsFile:
    """Read and validate the header of `path` without reading the data section.

    Raises InputError for anything that is not a well-formed safetensors file: the file is
    never trusted beyond what has been checked, and nothing larger than the header is allocated.
    """

    def bad(why: str) -> InputError:
        return InputError(f"{path.name} is not a valid safetensors file: {why}; re-download or re-export it")

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise bad(f"it is {size} bytes long, shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", f.read(8))
            if n > MAX_HEADER_BYTES:
                raise bad(f"its header claims {n} bytes, over the format's {MAX_HEADER_BYTES}-byte cap")
            if 8 + n > size:
                raise bad(f"its header claims {n} bytes but the file has only {size - 8} after the length")
            raw = f.read(n)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    if len(raw) != n:
        raise bad("it was truncated while being read")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise bad(f"its header is not JSON ({e.__class__.__name__})") from e
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")

    metadata = header.pop("__metadata__", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise bad("its __metadata__ is not a map of strings")

    data_start = 8 + n
    data_len = size - data_start
    tensors = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise bad(f"entry {name!r} is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_SIZES:
            raise bad(f"tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(f"tensor {name!r} has an invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise bad(f"tensor {name!r} has invalid data_offsets {offsets!r}")
        if offsets[1] > data_len:
            raise bad(f"tensor {name!r} points past the end of the file")
        if offsets[1] - offsets[0] != nbytes_of(dtype, shape):
            raise bad(
                f"tensor {name!r} has {offsets[1] - offsets[0]} bytes, its shape and dtype need {nbytes_of(dtype, shape)}"
            )
        tensors.append(TensorEntry(name, dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1]))

    tensors.sort(key=lambda t: (t.start, t.end))
    at = data_start
    for t in tensors:
        if t.start < at:
            raise bad(f"tensor {t.name!r} overlaps the tensor before it")
        if t.start > at:
            raise bad(f"there is a hole of {t.start - at} bytes before tensor {t.name!r}")
        at = t.end
    if at != size:
        raise bad(f"{size - at} bytes follow the last tensor")
    return SafetensorsFile(path, size, tensors, metadata)


@dataclass(frozen=True)
class FileRange:
    """`nbytes` of the output tensor are copied from `path` starting at absolute offset `start`."""

    path: Path
    start: int


CAST_CHUNK = 32 << 20  # source bytes converted at a time: memory stays flat for any tensor size


@dataclass(frozen=True)
class Cast:
    """The output tensor holds the values of `source` (`dtype` values in a file, or a tensor)
    converted to the output's dtype by torch, chunk by chunk."""

    source: FileRange | Any  # FileRange, or a torch.Tensor
    dtype: str


@dataclass(frozen=True)
class OutTensor:
    """One tensor of an output file: its bytes come from a FileRange (copied), a Cast (converted
    while copying), or a callable that returns them when first needed (after everything else of
    the file has been written)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    source: FileRange | Cast | Callable[[], Buffer]

    @property
    def nbytes(self) -> int:
        return nbytes_of(self.dtype, self.shape)


def encode_header(tensors: list[OutTensor], ends_at: int | None = None) -> bytes:
    """The 8-byte length + JSON header for `tensors` laid out in order: padded with spaces to a
    multiple of 8 bytes, or, with `ends_at`, to the fewest bytes whose length is `ends_at` modulo ALIGN."""
    header: dict[str, Any] = {"__metadata__": METADATA}
    at = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [at, at + t.nbytes]}
        at += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    if ends_at is None:
        raw += b" " * (-len(raw) % 8)
    else:
        raw += b" " * ((ends_at - 8 - len(raw)) % ALIGN)
    return struct.pack("<Q", len(raw)) + raw


@dataclass(frozen=True)
class Arranged:
    """An output file's layout: its tensors in file order and its header bytes."""

    tensors: list[OutTensor]
    header: bytes

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return len(self.header) + sum(t.nbytes for t in self.tensors)


def arrange(tensors: list[OutTensor]) -> Arranged:
    """Lay out `tensors` (given in the plan's order) so that copied bytes keep their source offsets
    modulo ALIGN, where the kernel can then share their blocks instead of copying them.

    Anchors are the (up to MAX_ANCHORS) largest runs of tensors copied from consecutive source bytes,
    of ANCHOR_BYTES or more, kept in the plan's order. The header is padded so that the first anchor
    lands at its source offset modulo ALIGN. Before each later anchor go spare tensors whose sizes add
    up to what realigns it, when some subset does: the tensors outside anchors (the new table, small
    runs) and the small tensors at the head of the first anchor and the tail of the last, whose
    removal moves no large tensor. Unused spares outside anchors follow the last anchor, in
    the plan's order. When anchors hold less than half the copied bytes (casts, .bin archives) the
    plan's order and an 8-byte padding are kept. The rule reads only the tensors and their source
    offsets: the same bytes on every file system.
    """
    sizes = [t.nbytes for t in tensors]
    runs = _runs(tensors)
    big = sorted((r for r in runs if sum(sizes[i] for i in r) >= ANCHOR_BYTES), key=lambda r: -sum(sizes[i] for i in r))
    anchors = sorted(big[:MAX_ANCHORS], key=lambda r: r[0])
    if not anchors or 2 * sum(sizes[i] for r in anchors for i in r) < sum(sizes[i] for r in runs for i in r):
        return Arranged(tensors, encode_header(tensors))
    taken = {i for r in anchors for i in r}
    loose = [i for i in range(len(tensors)) if i not in taken]
    spare = sorted([*loose, *_edge(anchors[0], sizes), *_edge(anchors[-1][::-1], sizes)]) if len(anchors) > 1 else []
    used: set[int] = set()
    at = (_src_start(tensors[anchors[0][-1]]) + sizes[anchors[0][-1]]) % ALIGN  # where the first anchor ends
    fills = []
    for run in anchors[1:]:
        need = (_src_start(tensors[run[0]]) - at) % ALIGN
        fill = _filler([i for i in spare if i not in used], sizes, need) or []
        used.update(fill)
        fills.append(fill)
        at = (at + sum(sizes[i] for i in fill) + sum(sizes[i] for i in run if i not in used)) % ALIGN
    order = [i for i in anchors[0] if i not in used]
    for fill, run in zip(fills, anchors[1:], strict=True):
        order += fill + [i for i in run if i not in used]
    ordered = [tensors[i] for i in order + [i for i in loose if i not in used]]
    # the header aligns the first anchor's first large tensor; the small ones left before it shift
    core = anchors[0][len(_edge(anchors[0], sizes))]
    before = sum(sizes[i] for i in anchors[0][: anchors[0].index(core)] if i not in used)
    return Arranged(ordered, encode_header(ordered, ends_at=(_src_start(tensors[core]) - before) % ALIGN))


def _edge(run: list[int], sizes: list[int]) -> list[int]:
    """The small tensors (under ANCHOR_BYTES) at the start of `run`, never all of it."""
    edge = []
    for i in run[:-1]:
        if sizes[i] >= ANCHOR_BYTES:
            break
        edge.append(i)
    return edge


def _src_start(t: OutTensor) -> int:
    assert isinstance(t.source, FileRange)
    return t.source.start


def _runs(tensors: list[OutTensor]) -> list[list[int]]:
    """Indices of the maximal runs of tensors that are copied from consecutive bytes of one file."""
    runs: list[list[int]] = []
    end: tuple[Path, int] | None = None
    for i, t in enumerate(tensors):
        if not isinstance(t.source, FileRange):
            end = None
            continue
        if end == (t.source.path, t.source.start):
            runs[-1].append(i)
        else:
            runs.append([i])
        end = (t.source.path, t.source.start + t.nbytes)
    return runs


def _filler(candidates: list[int], sizes: list[int], need: int) -> list[int] | None:
    """Some of `candidates` (in their order) whose sizes add up to `need` modulo ALIGN, or None when
    no subset does: a subset sum over residues, one bit per residue."""
    if need == 0:
        return []
    mask = (1 << ALIGN) - 1
    reach = [1]  # reach[k]: bit r is set when some subset of the first k candidates sums to r
    for i in candidates:
        s, r = sizes[i] % ALIGN, reach[-1]
        reach.append(r | (((r << s) | (r >> (ALIGN - s))) & mask) if s else r)
    if not reach[-1] >> need & 1:
        return None
    picked = []
    for k in range(len(candidates), 0, -1):
        if not reach[k - 1] >> need & 1:  # not reachable without candidate k-1: it is in
            picked.append(candidates[k - 1])
            need = (need - sizes[candidates[k - 1]]) % ALIGN
    return picked[::-1]


def write_file(
    path: Path, layout: Arranged, progress: Progress | None = None, on_written: Written | None = None
) -> int:
    """Write a new safetensors file at `path` as `layout` (from `arrange`) lays it out; return its size.

    Runs of tensors that come from consecutive bytes of one source file are copied in one
    kernel-side copy (copy_file_range, which shares whole blocks where the file system can; then a
    buffered copy as the fallback); cast tensors are converted chunk by chunk. Tensors with computed
    bytes are written last, so the (slow) computation can overlap the copy. When the header is the
    source file's own, it is copied with the first run: an unchanged file is shared whole.
    `on_written(start, end)` is told each byte range of the file once it is final.
    """
    done = on_written or (lambda start, end: None)
    head, tensors = layout.header, layout.tensors
    offsets = []
    at = len(head)
    for t in tensors:
        offsets.append(at)
        at += t.nbytes
    total = at

    with open(path, "wb") as out:
        dst = out.fileno()
        runs = _copy_runs(tensors, offsets)
        if runs and runs[0][1:3] == (len(head), len(head)) and read_bytes(runs[0][0], 0, len(head)) == head:
            src, _, _, length = runs[0]
            runs[0] = (src, 0, 0, len(head) + length)  # the source's own header: copied, shared with the rest
            progress = _skipping(progress, len(head))  # progress counts tensor bytes
        else:
            out.write(head)
            out.flush()
            done(0, len(head))
        _copy_all(runs, dst, progress, done)
        # 2. convert cast tensors, chunk by chunk
        for t, off in zip(tensors, offsets, strict=True):
            if isinstance(t.source, Cast):
                write_cast(dst, off, t, t.source, progress)
                done(off, off + t.nbytes)
        # 3. write computed tensors at their offsets
        for t, off in zip(tensors, offsets, strict=True):
            if isinstance(t.source, (FileRange, Cast)):
                continue
            data = memoryview(t.source()).cast("B")
            if len(data) != t.nbytes:
                raise ValueError(f"{t.name}: got {len(data)} bytes, expected {t.nbytes}")
            at = 0
            while at < len(data):
                at += os.pwrite(dst, data[at : at + BUFFER_CHUNK], off + at)
            done(off, off + len(data))
            if progress:
                progress(len(data))
        os.ftruncate(dst, total)  # no-op unless a zero-length tensor is last
    return total


Run = tuple[Path, int, int, int]  # (source file, source offset, output offset, length)


def _copy_runs(tensors: list[OutTensor], offsets: list[int]) -> list[Run]:
    """The copied tensors as runs of consecutive bytes in both the source and the output."""
    runs: list[Run] = []
    for t, off in zip(tensors, offsets, strict=True):
        if not isinstance(t.source, FileRange):
            continue
        if runs:
            src, src_start, dst_start, length = runs[-1]
            if src == t.source.path and src_start + length == t.source.start and dst_start + length == off:
                runs[-1] = (src, src_start, dst_start, length + t.nbytes)
                continue
        runs.append((t.source.path, t.source.start, off, t.nbytes))
    return runs


def _copy_all(runs: list[Run], dst: int, progress: Progress | None, done: Written) -> None:
    """Copy every run into `dst`, each source file opened once."""
    with contextlib.ExitStack() as stack:
        fds: dict[Path, int] = {}
        for src_path, src_start, dst_start, length in runs:
            if src_path not in fds:
                try:
                    src_file = open(src_path, "rb")
                except OSError as e:
                    raise InputError(f"cannot read {src_path}: {e.strerror or e}; check its permissions") from e
                fds[src_path] = stack.enter_context(src_file).fileno()
            copy_range(fds[src_path], dst, src_start, dst_start, length, progress, done)


def _skipping(progress: Progress | None, skip: int) -> Progress | None:
    """`progress`, told nothing of the first `skip` bytes."""
    if progress is None:
        return None
    left = skip

    def report(n: int) -> None:
        nonlocal left
        counted = max(0, n - left)
        left = max(0, left - n)
        if counted:
            progress(counted)

    return report


def write_cast(dst: int, offset: int, t: OutTensor, cast: Cast, progress: Progress | None = None) -> None:
    """Write `cast.source` converted to `t.dtype` at `offset` of file descriptor `dst`, one chunk
    at a time (torch's conversion: round to nearest even, as `tensor.to(dtype)`)."""
    import torch

    numel = math.prod(t.shape)
    src_size, dst_size = DTYPE_SIZES[cast.dtype], DTYPE_SIZES[t.dtype]
    step = max(1, CAST_CHUNK // src_size)
    to = torch_dtype(t.dtype)
    with contextlib.ExitStack() as stack:
        if isinstance(cast.source, FileRange):
            try:
                src = stack.enter_context(open(cast.source.path, "rb", buffering=0))
            except OSError as e:
                raise InputError(f"cannot read {cast.source.path}: {e.strerror or e}; check its permissions") from e
            flat = None
        else:
            flat = cast.source.reshape(-1)
        for i in range(0, numel, step):
            n = min(step, numel - i)
            if flat is None:
                raw = bytearray(n * src_size)
                view = memoryview(raw)
                got = 0
                while got < len(raw):
                    k = os.preadv(src.fileno(), [view[got:]], cast.source.start + i * src_size + got)
                    if not k:
                        raise InputError(
                            f"{cast.source.path.name} became shorter while it was being read; was it modified?"
                        )
                    got += k
                chunk = torch.frombuffer(raw, dtype=torch_dtype(cast.dtype)).to(to)
            else:
                chunk = flat[i : i + n].to(to)
            data = tensor_bytes(chunk)
            done = 0
            while done < len(data):
                done += os.pwrite(dst, data[done : done + BUFFER_CHUNK], offset + i * dst_size + done)
            if progress:
                progress(n * dst_size)


def copy_range(src: int, dst: int, src_off: int, dst_off: int, length: int, progress: Progress | None = None,
               on_copied: Written | None = None) -> None:  # fmt: skip
    """Copy `length` bytes from `src` at `src_off` to `dst` at `dst_off` (file descriptors);
    `on_copied(start, end)` is told each range of `dst` as soon as it is copied.

    Calls after the first start on an ALIGN boundary of `dst`: where the source offset is then on a
    block boundary too, XFS and btrfs share the whole blocks (reflink) and copy only the partial ones."""
    done = 0
    use_cfr = hasattr(os, "copy_file_range")
    while done < length:
        want = min(KERNEL_CHUNK if use_cfr else BUFFER_CHUNK, length - done)
        if (dst_off + done) % ALIGN:
            want = min(want, ALIGN - (dst_off + done) % ALIGN)  # up to the first block boundary
        n = 0
        if use_cfr:
            try:
                n = os.copy_file_range(src, dst, want, src_off + done, dst_off + done)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                    raise
                use_cfr = False
                continue
        else:
            chunk = os.pread(src, want, src_off + done)
            n = len(chunk)
            written = 0
            while written < n:
                written += os.pwrite(dst, memoryview(chunk)[written:], dst_off + done + written)
        if n == 0:
            raise InputError("a source file became shorter while it was being copied; was it modified?")
        if on_copied:
            on_copied(dst_off + done, dst_off + done + n)
        done += n
        if progress:
            progress(n)


def read_bytes(path: Path, start: int, nbytes: int) -> bytearray:
    """`nbytes` of `path` from absolute offset `start`."""
    buf = bytearray(nbytes)
    try:
        with open(path, "rb", buffering=0) as f:
            f.seek(start)
            view = memoryview(buf)
            got = 0
            while got < nbytes:
                n = f.readinto(view[got:])
                if not n:
                    raise InputError(f"{path.name} became shorter while it was being read; was it modified?")
                got += n
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}; check its permissions") from e
    return buf
