"""A checkpoint folder on disk → a description of its weights, without reading them.

Knows the Hugging Face file layout (model.safetensors, sharded indexes, pytorch_model.bin),
validates it, and says where every tensor's bytes are. A `pytorch_model.bin` that is a plain
state dict in a torch zip archive is located without torch (torch_zip.py); any other is read
only through `torch.load(weights_only=True)`, memory-mapped where the archive allows it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .dtypes import DTYPE_SIZES, nbytes_of, st_dtype, tensor_from_bytes
from .safetensors import FileRange, TensorEntry, read_bytes, read_header
from .torch_zip import Unsupported, read_layout

if TYPE_CHECKING:
    import torch

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
# the weight files of the Hugging Face layout (transformers, timm), preferred first; a family with
# files of its own names them (open_clip)
STANDARD_WEIGHTS = (SAFETENSORS_INDEX, SAFETENSORS, BIN_INDEX, BIN)
CONFIG = "config.json"
# Weight files of any framework: never carried over to the output (they would hold the old grid).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx", ".ckpt", ".pt", ".pth", ".gguf", ".index.json")


@dataclass
class SourceTensor:
    """One tensor of the source: its bytes are a FileRange in a file, or a (memory-mapped) tensor."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: FileRange | torch.Tensor

    @property
    def nbytes(self) -> int:
        return nbytes_of(self.dtype, self.shape)


@dataclass
class Shard:
    """One weight file of the source and the safetensors file name it becomes in the output."""

    source: Path
    out_name: str
    tensors: list[SourceTensor]


@dataclass
class Checkpoint:
    """The weights of a checkpoint folder, described but not read."""

    folder: Path
    weight_format: str  # "safetensors" or "bin"
    shards: list[Shard]
    index_name: str | None  # output index file name when sharded
    index_metadata: dict[str, Any] = field(default_factory=dict)
    keepalive: list[Any] = field(default_factory=list)  # loaded .bin state dicts

    def tensor(self, name: str) -> SourceTensor:
        for shard in self.shards:
            for t in shard.tensors:
                if t.name == name:
                    return t
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [t.name for s in self.shards for t in s.tensors]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor's name → its shape, in file order."""
        return {t.name: t.shape for s in self.shards for t in s.tensors}


def not_a_file(path: Path) -> str | None:
    """What `path` is when something is there but not a regular file (a FIFO would block a read
    forever; a dangling link is a file an interrupted download never fetched); else None."""
    if not os.path.lexists(path) or path.is_file():
        return None
    if path.is_symlink() and not path.exists():
        return "a link to a file that does not exist (an interrupted download?)"
    if path.is_dir():
        return "a folder, not a file"
    return "not a regular file (a FIFO, socket or device)"


def load_tensor(t: SourceTensor) -> torch.Tensor:
    """The tensor itself (read from its file when it lies in one)."""
    if isinstance(t.data, FileRange):
        return tensor_from_bytes(read_bytes(t.data.path, t.data.start, t.nbytes), t.dtype, t.shape)
    return t.data


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or an InputError naming the file."""
    what = not_a_file(path)
    if what:
        raise InputError(f"{path} is {what}; fix or re-download it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise InputError(f"{path.parent} has no {path.name}; is it a Hugging Face model folder?") from e
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}; check its permissions") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({e}); fix or re-download it") from e
    if not isinstance(data, dict):
        raise InputError(f"{path} does not hold a JSON object")
    return data


def check_readable(path: Path) -> None:
    """Raise an InputError naming `path` when this process cannot open it for reading."""
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}; check its permissions") from e


def is_weight_file(name: str) -> bool:
    """True for files that hold weights in any format (not carried over to the output)."""
    return name.endswith(WEIGHT_SUFFIXES)


def pick_weights(names: list[str] | set[str], layout: tuple[str, ...] = STANDARD_WEIGHTS) -> str | None:
    """The file of `layout` (weight files, preferred first) that a folder or repo with these file
    names reads its weights from (an index, for sharded weights), or None."""
    present = set(names)
    return next((n for n in layout if n in present), None)


def open_checkpoint(folder: Path, layout: tuple[str, ...] = STANDARD_WEIGHTS) -> Checkpoint:
    """Find and validate the weights in `folder`: the first of `layout` (a family's weight files,
    preferred first: safetensors before pytorch_model.bin, sharded before single) that it has. An
    output writes safetensors: a `.bin` becomes the layout's `.safetensors` file of the same form."""
    for file in layout:
        what = not_a_file(folder / file)
        if what:
            raise InputError(f"{folder / file} is {what}; re-download the checkpoint")
    name = pick_weights({n for n in layout if (folder / n).is_file()}, layout)
    if name is None:
        raise InputError(f"{folder} has no weights: expected {', '.join(layout[:-1])} or {layout[-1]}")
    if name.endswith(".index.json"):
        return _sharded(folder, name, "safetensors" if name.endswith(".safetensors.index.json") else "bin")
    path = folder / name
    if name.endswith(".safetensors"):
        return Checkpoint(folder, "safetensors", [Shard(path, name, _safetensors_tensors(path))], None)
    out_name = next(n for n in layout if n.endswith(".safetensors"))
    keep: list[Any] = []
    return Checkpoint(folder, "bin", [Shard(path, out_name, _bin_tensors(path, keep))], None, keepalive=keep)


def _safetensors_tensors(path: Path) -> list[SourceTensor]:
    return _in_file(path, read_header(path).tensors)


def _in_file(path: Path, entries: list[TensorEntry]) -> list[SourceTensor]:
    """Tensors whose bytes are copied straight from `path`."""
    return [SourceTensor(t.name, t.dtype, t.shape, FileRange(path, t.start)) for t in entries]


def _sharded(folder: Path, index_name: str, fmt: str) -> Checkpoint:
    index = read_json(folder / index_name)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError(f"{index_name} has no weight_map; re-download the checkpoint")
    shard_names: list[str] = []
    for tensor_name, shard_name in weight_map.items():
        if not isinstance(shard_name, str) or not is_plain_name(shard_name):
            raise InputError(
                f"{index_name} names shard {shard_name!r} for {tensor_name!r}: "
                "shard names must be plain file names inside the checkpoint folder"
            )
        if shard_name not in shard_names:
            shard_names.append(shard_name)
    keep: list[Any] = []
    shards = []
    seen: dict[str, str] = {}
    for shard_name in shard_names:
        path = folder / shard_name
        if not path.is_file():
            raise InputError(f"{index_name} lists shard {shard_name} but {folder} has no such file; re-download it")
        tensors = _safetensors_tensors(path) if fmt == "safetensors" else _bin_tensors(path, keep)
        for t in tensors:
            if t.name in seen:
                raise InputError(f"tensor {t.name!r} is stored twice, in {seen[t.name]} and {shard_name}")
            seen[t.name] = shard_name
            if weight_map.get(t.name) != shard_name:
                raise InputError(
                    f"{shard_name} holds {t.name!r} but {index_name} does not map it there; the index is inconsistent"
                )
        out_name = shard_name if fmt == "safetensors" else _bin_to_safetensors_name(shard_name)
        shards.append(Shard(path, out_name, tensors))
    missing = [n for n in weight_map if n not in seen]
    if missing:
        raise InputError(f"{index_name} lists {len(missing)} tensors no shard holds (first: {missing[0]!r})")
    metadata = index.get("metadata") if isinstance(index.get("metadata"), dict) else {}
    return Checkpoint(folder, fmt, shards, SAFETENSORS_INDEX, dict(metadata or {}), keep)


def is_plain_name(name: str) -> bool:
    """True for a file name that stays inside its folder: no separator, no `..`, not absolute."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def _bin_to_safetensors_name(name: str) -> str:
    stem = name.removesuffix(".bin")
    stem = "model" + stem.removeprefix("pytorch_model") if stem.startswith("pytorch_model") else stem
    return stem + ".safetensors"


def load_bin(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True (memory-mapped when the archive format allows it)."""
    import pickle
    import struct
    import zipfile

    import torch

    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic == b"PK\x03\x04":  # a zip archive's first member, but no readable end: cut short
            raise InputError(f"{path.name} is a damaged torch zip archive (cut short?); re-download it")
        if magic[:2] not in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):  # legacy torch.save pickles
            raise InputError(f"{path.name} is not a PyTorch checkpoint (neither a torch zip archive nor a pickle)")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy, non-zip archive
    except pickle.UnpicklingError as e:
        raise InputError(
            f"{path.name} asks to run code or build objects beyond plain tensors, which xcr refuses "
            "(weights_only=True): the file may be unsafe; get the checkpoint from a trusted source"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, struct.error, IndexError) as e:
        # a legacy (non-zip) archive cut short fails inside torch's unpickler with struct.error or IndexError
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise InputError(f"{path.name} is not a readable PyTorch checkpoint ({first}); re-download it") from e
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise InputError(f"{path.name} is not a state dict of named tensors")
    return obj


def _bin_tensors(path: Path, keep: list[Any]) -> list[SourceTensor]:
    check_readable(path)
    out = _bin_tensors_without_torch(path)
    if out is None:
        out = _bin_tensors_with_torch(path, keep)
    # safetensors convention: widest dtypes first keeps every tensor aligned to its element size
    out.sort(key=lambda s: (-DTYPE_SIZES[s.dtype], s.name))
    return out


def _bin_tensors_without_torch(path: Path) -> list[SourceTensor] | None:
    """The plain state dicts of torch zip archives, located without torch; None for the rest."""
    try:
        return _in_file(path, read_layout(path))
    except Unsupported:
        return None


def _bin_tensors_with_torch(path: Path, keep: list[Any]) -> list[SourceTensor]:
    state = load_bin(path)
    keep.append(state)
    locate = _mmap_locator(path)
    out = []
    for name, t in state.items():
        where: FileRange | torch.Tensor = t
        if locate and t.is_contiguous() and t.device.type == "cpu":
            offset = locate(t.untyped_storage().data_ptr())
            if offset is not None:
                where = FileRange(path, offset + t.storage_offset() * t.element_size())
        out.append(SourceTensor(name, st_dtype(t.dtype), tuple(t.shape), where))
    return out


def _mmap_locator(path: Path) -> Callable[[int], int | None] | None:
    """Map a pointer into this process's memory mapping of `path` back to a file offset.

    torch.load(mmap=True) maps the archive; tensor storages are its uncompressed members, so
    their bytes can be copied file-to-file instead of through memory. Linux only; None elsewhere.
    """
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    target = os.path.realpath(path)
    regions = []
    for line in maps.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5] == target:
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            regions.append((lo, hi, int(parts[2], 16)))
    if not regions:
        return None

    def locate(ptr: int) -> int | None:
        for lo, hi, off in regions:
            if lo <= ptr < hi:
                return ptr - lo + off
        return None

    return locate


def entries_beyond(folder: Path, names: set[str]) -> list[str]:
    """What in `folder` is not one of `names` (paths relative to it, with `/`): `name`, or `name/`
    for a folder; a folder on the way to one of `names` is looked into. Raises OSError."""
    dirs = {"/".join(n.split("/")[:i]) for n in names for i in range(1, len(n.split("/")))}
    extra: list[str] = []

    def visit(current: Path, prefix: str) -> None:
        for entry in sorted(current.iterdir()):
            rel = prefix + entry.name
            if entry.is_dir() and not entry.is_symlink() and rel in dirs:
                visit(entry, rel + "/")
            elif rel not in names or entry.is_dir():
                extra.append(rel + ("/" if entry.is_dir() else ""))

    visit(folder, "")
    return extra


# Subfolders whose files are never carried over: other export formats of the weights (their
# configs would describe the old size), and hidden folders (.git, huggingface_hub's .cache).
EXPORT_FOLDERS = ("onnx", "openvino", "coreml", "tflite", "tf", "flax", "mlx", "gguf")


def walk(folder: Path, skipped: list[str] | None = None) -> Iterator[tuple[Path, str]]:
    """Every entry under `folder` that a conversion looks at, as (path, name relative to `folder`
    with `/`): the top-level entries, and those of subfolders, recursively, but not hidden
    folders nor EXPORT_FOLDERS (whose names, `name/`, go to `skipped`). Folders themselves are not
    yielded; a link to a folder is yielded (as an entry that is not a file), never followed."""

    def visit(current: Path, prefix: str) -> Iterator[tuple[Path, str]]:
        try:
            entries = sorted(current.iterdir())
        except OSError as e:
            raise InputError(
                f"cannot list the source folder {current}: {e.strerror or e}; check its permissions"
            ) from e
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir() and not entry.is_symlink():
                if not entry.name.startswith(".") and entry.name not in EXPORT_FOLDERS:
                    yield from visit(entry, rel + "/")
                elif skipped is not None:
                    skipped.append(rel + "/")
            else:
                yield entry, rel

    yield from visit(folder, "")
