"""What made an output, recorded inside it, and the check that makes re-runs cheap.

Every output's model card (README.md) holds in its front matter, under `xcomposer_resize:`, what
made it: the source (a Hub repo id at a commit, or a fingerprint of a folder's files: names, sizes,
modification times), the resolution and every option that shapes the bytes, the size of every file
written, and the SHA-256 of every rewritten tensor. A later run with the same source, resolution
and options finds that record, checks the output is complete and unchanged (every file there with
its size and digest, every safetensors header valid, every rewritten tensor reading back to its
digest, every copied tensor equal to the source's: digests.py) and rewrites nothing: Make and CI
caches stay warm.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import families
from ..checkpoint.safetensors import FileRange, read_bytes, read_header
from ..checkpoint.weights import entries_beyond, walk
from ..errors import InputError, XcrError
from ..families import family_named
from ..size import Size
from .card import CARD, parse_card
from .digests import COPIES, file_digest, first_difference, header_digest

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..checkpoint.source import Source
    from ..checkpoint.weights import Checkpoint
    from ..families import Family
    from ..options import Options

KEY = "xcomposer_resize"
FORMAT = 1
# the options that shape an output's bytes, beside the source and the resolution
SHAPING = ("mode", "antialias", "dtype", "vision_only", "with_projection", "device")


def fingerprint(source: Source) -> str:
    """Who the source is: `repo@commit` for a Hub snapshot (content-addressed); for a folder, a hash
    of its files' names, sizes and modification times (a changed or replaced file changes it)."""
    if source.repo_id and source.revision:
        return f"{source.repo_id}@{source.revision}"
    digest = hashlib.sha256()
    for path, rel in walk(source.folder):
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(os.fsencode(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n"))
    return "files:" + digest.hexdigest()[:32]


def wanted(options: Options, source: Source, source_fingerprint: str, res: Size, family: Family) -> dict[str, Any]:
    """What an output of this run for `res` records, before the files are known (`res`: 490, or
    [448, 672] when not square)."""
    return {
        "source": source.repo_id or source.name,
        "revision": source.revision,
        "source_fingerprint": source_fingerprint,
        "res": res.json(),
        "family": family.name,
        "mode": options.interpolation[0],
        "antialias": options.interpolation[1],
        "dtype": options.dtype,
        "vision_only": options.vision_only,
        "with_projection": options.with_projection,
        "device": resolved_device(options.device),
    }


def resolved_device(device: str) -> str:
    """The device "auto" stands for here (torch is imported only for "auto")."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def make(want: dict[str, Any], version: str, folder: Path, files: dict[str, int], tables: dict[str, str],
         weights: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """The record a finished output (in `folder`, before it lands) carries in its card: every file's
    size and digest (`weights`: the block digests of the weight files, hashed as they were written;
    the others, small, hashed here), and the digest of every rewritten tensor."""
    digests = {name: digest((folder / name).read_bytes()) for name in files if not _weights(name)}
    digests = dict(sorted({**digests, **weights}.items()))
    return {"format": FORMAT, "tool": f"xcomposer-resize {version}", **want, "files": dict(sorted(files.items())),
            "digests": digests, "tables": dict(sorted(tables.items()))}  # fmt: skip


def _weights(name: str) -> bool:
    return name.endswith(".safetensors")


def digest(data: bytes | bytearray | memoryview) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _family(name: object) -> Family | None:
    """The family `name` (any spelling) names, or None when it names none xcr knows."""
    try:
        return family_named(name) if isinstance(name, str) else None
    except XcrError:
        return None


def _same_family(a: object, b: object) -> bool:
    found = _family(a)
    return found is not None and found is _family(b)


def detect(folder: Path, forced: str | None = None) -> tuple[str, dict[str, Any], Family]:
    """The model config file, its content and its family, of a checkpoint folder that may be an xcr
    output: `families.detect` with the family its record names (an output made with --family keeps
    its source's config, which names none)."""
    rec = read(folder) if forced is None else None
    return families.detect(folder, forced, rec.get("family") if rec else None)


def read(folder: Path) -> dict[str, Any] | None:
    """The record in `folder`'s model card, or None when it has none (not an xcr output)."""
    card = folder / CARD
    try:
        if not card.is_file() or card.stat().st_size > 16 << 20:
            return None
        meta = parse_card(card.read_text(encoding="utf-8", errors="replace")).metadata
    except OSError:
        return None
    rec = meta.get(KEY)
    return rec if isinstance(rec, dict) and rec.get("format") == FORMAT else None


def foreign(folder: Path) -> list[str] | None:
    """What in `folder` an earlier xcr output did not write (`name`, or `name/` for a folder), or
    None when `folder` holds no xcr output (no record)."""
    rec = read(folder)
    files = rec.get("files") if rec else None
    if not isinstance(files, dict):
        return None
    try:
        return entries_beyond(folder, {CARD, *(str(name) for name in files)})
    except OSError:
        return None


@dataclass(frozen=True)
class Verdict:
    """What an existing folder is to this run: `up_to_date`, or an xcr output that differs
    (`reason` says how), or not an xcr output at all (`reason` None)."""

    up_to_date: bool
    reason: str | None = None


def check(folder: Path, want: dict[str, Any], source: Callable[[], Checkpoint] | None = None) -> Verdict:
    """Whether `folder` already holds exactly what this run would write (see the module doc);
    `source` opens the source's weights, to prove the tensors an output copied from them."""
    rec = read(folder)
    if rec is None:
        return Verdict(False)
    if rec.get("source_fingerprint") != want["source_fingerprint"]:
        made = f"{rec.get('source')}" + (f" at {str(rec['revision'])[:12]}" if rec.get("revision") else "")
        if rec.get("source") != want["source"]:
            return Verdict(False, f"was made from another source ({made})")
        if want["revision"]:
            return Verdict(
                False, f"was made from another commit of {made.split(' at ')[0]} ({str(rec.get('revision'))[:12]})"
            )
        return Verdict(
            False,
            f"was made from the files of a folder {want['source']} as they were then (since, a file was changed, "
            "added, removed, copied or touched: a folder is told by its files' names, sizes and times)",
        )
    if rec.get("res") != want["res"]:
        size = Size.from_json(rec.get("res"))
        wanted_size = Size.from_json(want["res"])
        return Verdict(
            False, f"is for {size.px if size else rec.get('res')}, not {wanted_size.px if wanted_size else ''}"
        )
    if "family" in rec and not _same_family(rec["family"], want["family"]):  # older records name none
        return Verdict(False, f"was made reading the source as {rec['family']}, not as {want['family']}")
    for key in SHAPING:
        if rec.get(key) != want[key] and not (key == "dtype" and _same_cast(rec, want)):
            return Verdict(False, f"was made with {key} {rec.get(key)!r}, not {want[key]!r}")
    problem = _incomplete(folder, rec, source)
    if problem:
        return Verdict(False, f"is incomplete or damaged: {problem}")
    return Verdict(True)


def _same_cast(rec: dict[str, Any], want: dict[str, Any]) -> bool:
    """`--dtype float32` and `keep` make the same weights from a source whose floating tensors are
    all float32 (the record names the source's floating dtypes; the source is the same one)."""
    dtypes = {rec.get("dtype"), want["dtype"]}
    return "keep" in dtypes and len(dtypes) == 2 and rec.get("source_dtypes") == [next(iter(dtypes - {"keep"}))]


def _incomplete(folder: Path, rec: dict[str, Any], source: Callable[[], Checkpoint] | None) -> str | None:
    files, tables = rec.get("files"), rec.get("tables")
    if not isinstance(files, dict) or not isinstance(tables, dict):
        return "its record lists no files"
    for name, size in files.items():
        path = folder / str(name)
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, not {size}"
    digests = rec.get("digests")
    if not isinstance(digests, dict):
        return "its record holds no digests"
    for name in files:
        if name not in digests:
            return f"its record holds no digest of {name} (an older xcr wrote it), so it cannot be proved intact"
        if not _weights(str(name)) and digest((folder / str(name)).read_bytes()) != digests[name]:
            return f"{name} was changed since it was written"
    entries = {}
    for name in files:
        if str(name).endswith(".safetensors"):
            try:
                entries.update({t.name: (folder / str(name), t) for t in read_header(folder / str(name)).tensors})
            except InputError as e:
                return e.message
    for tensor, want in tables.items():
        if tensor not in entries:
            return f"{tensor} is not in its weights"
        path, t = entries[tensor]
        try:
            if digest(read_bytes(path, t.start, t.nbytes)) != want:
                return f"{tensor} does not read back as written"
        except InputError as e:
            return e.message
    for name in files:  # last: every byte of the weights, on every core
        if _weights(str(name)):
            try:
                if str(digests[name]).startswith(COPIES):
                    problem = _copies_differ(folder / str(name), str(digests[name]), tables, source)
                    if problem:
                        return problem
                elif file_digest(folder / str(name)) != digests[name]:
                    return f"{name} was changed since it was written (its content digest differs)"
            except OSError as e:
                return f"{name} cannot be read ({e.strerror or e})"
    return None


def _copies_differ(
    path: Path, want: str, tables: dict[str, Any], source: Callable[[], Checkpoint] | None
) -> str | None:
    """Why the weight file `path`, recorded as its header and copies of the source's tensors (`want`),
    is not that any more; None when it is. The rewritten tensors (`tables`) are checked apart."""
    if header_digest(path) != want:
        return f"{path.name} was changed since it was written (its header differs)"
    if source is None:
        return f"{path.name} holds copies of the source's tensors, and the source's weights are not at hand to compare"
    try:
        ckpt = source()
        spans = []
        for t in read_header(path).tensors:
            if t.name in tables or not t.nbytes:
                continue
            theirs = ckpt.tensor(t.name)
            if not isinstance(theirs.data, FileRange) or (theirs.dtype, theirs.shape) != (t.dtype, t.shape):
                return f"{path.name}: {t.name} is not stored as in the source's weights any more"
            spans.append((t.start, theirs.data.path, theirs.data.start, t.nbytes))
    except KeyError as e:
        return f"{path.name}: {e.args[0]} is not in the source's weights any more"
    except InputError as e:
        return f"the source's weights cannot be read to compare ({e.message})"
    bad = first_difference(path, spans)
    if bad is not None:
        return f"{path.name} was changed since it was written (its bytes of {_name_at(path, spans[bad][0])} differ from the source's)"
    return None


def _name_at(path: Path, offset: int) -> str:
    return next(t.name for t in read_header(path).tensors if t.start == offset)
