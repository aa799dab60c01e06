"""The one orchestration: source → plan → write to a temporary folder → verify → rename.

`resize()` is the library's entry point; the CLI is a thin face over it.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .configs import CardInfo, VisionSizes, dump_json, model_card, rewrite_config, rewrite_preprocessor, vision_sizes
from .errors import InputError, OutputError, UsageError, XcrError
from .families import Family, family_for
from .interpolate import ANTIALIAS_MODES, MODES, grid_side
from .output import check_output, default_name, land, remove, temp_dir_for
from .safetensors_io import (
    DTYPE_SIZES,
    Buffer,
    FileRange,
    OutTensor,
    read_bytes,
    read_header,
    tensor_bytes,
    tensor_from_bytes,
    write_file,
)
from .sources import Checkpoint, SourceTensor, is_weight_file, open_checkpoint, read_json

if TYPE_CHECKING:
    import torch

    from .hub import Source
    from .worker import Worker

DEFAULT_MODEL = "openai/clip-vit-large-patch14-336"
DEVICES = ("auto", "cpu", "cuda")
MAX_TABLE_BYTES = 2 << 30  # refuse position tables larger than this (float32)
REWRITTEN_FILES = ("config.json", "preprocessor_config.json", "README.md")

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)
NoteFn = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """One output: a resolution and the folder it goes to."""

    res: int
    out: Path

    def grid(self, patch: int) -> int:
        return self.res // patch


@dataclass(frozen=True)
class OutputReport:
    path: str
    res: int
    grid: tuple[int, int]


@dataclass
class Result:
    """What `resize` did; `to_json()` is the CLI's --json object."""

    source: str
    revision: str | None
    outputs: list[OutputReport]
    tensors_rewritten: list[str]
    bytes_written: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "revision": self.revision,
            "outputs": [{"path": o.path, "res": o.res, "grid": list(o.grid)} for o in self.outputs],
            "tensors_rewritten": self.tensors_rewritten,
            "bytes_written": self.bytes_written,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Plan:
    """Everything known about the source before a byte is written."""

    source: Source
    family: Family
    config: dict[str, Any]
    preprocessor: dict[str, Any] | None
    sizes: VisionSizes
    targets: list[Target]
    checkpoint: Checkpoint
    pos: SourceTensor  # the position table [prefix + g*g, C]
    ids: SourceTensor | None  # the position-id buffer [1, prefix + g*g], when the checkpoint has one


def resize(
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    res: int | Sequence[int] = 490,
    out: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    device: str = "cpu",
    mode: str = "bicubic",
    antialias: bool = False,
    revision: str | None = None,
    token: str | None = None,
    quiet: bool = True,
    on_progress: ProgressFn | None = None,
    on_note: NoteFn | None = None,
) -> Result:
    """Convert `model` (a folder, or a Hub repo id) to each resolution in `res`.

    Writes one folder per resolution (`out`, or a name derived from the source's), each a
    complete checkpoint whose config states the new resolution. Raises XcrError subclasses.

    `device` defaults to "cpu": CPU bicubic is the one transformers and XComposer compute, bit for
    bit; CUDA's kernel differs by up to one ulp when upsampling (measured on an H100), and the
    table is small enough that the GPU saves nothing. "auto" picks CUDA when present.
    """
    started = time.perf_counter()
    resolutions = [res] if isinstance(res, int) else list(res)
    _check_flags(resolutions, out, device, mode, antialias)
    note = on_note or (lambda _msg: None)

    from .hub import resolve_source

    source = resolve_source(str(model), revision=revision, token=token, quiet=quiet)
    config = read_json(source.folder / "config.json")
    family = family_for(config)
    sizes = vision_sizes(config, family)
    targets = []
    for r in resolutions:
        _check_res(r, sizes.patch_size)
        _check_cost(r, r // sizes.patch_size, _config_width(config, family), family.num_prefix_tokens)
        name = default_name(source.name, sizes.image_size, r)
        target = Target(r, Path(out) if out is not None else Path.cwd() / name)
        check_output(target.out, source.folder, force)
        targets.append(target)
    if device == "cuda":
        _check_cuda()

    source.fetch_weights()
    plan = _plan(source, family, config, sizes, targets)
    if any(t.grid(sizes.patch_size) == sizes.grid for t in targets):
        note(f"the position grid is already {sizes.grid}×{sizes.grid} at {sizes.image_size} px: writing it unchanged")

    total = sum(_planned_bytes(plan, t) for t in targets)
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if on_progress:
            on_progress(done, total)

    written = 0
    rewritten: set[str] = set()
    reports = []
    worker = _start_worker(plan)
    try:
        for target in targets:
            nbytes, names = _write_target(plan, target, device, mode, antialias, progress, worker)
            written += nbytes
            rewritten.update(names)
            g = target.grid(sizes.patch_size)
            reports.append(OutputReport(str(target.out), target.res, (g, g)))
    except BaseException:
        if worker:
            worker.kill()
        raise
    if worker:
        worker.close()
    return Result(
        source=source.display,
        revision=source.revision,
        outputs=reports,
        tensors_rewritten=sorted(rewritten),
        bytes_written=written,
        seconds=time.perf_counter() - started,
    )


# ---------------------------------------------------------------- checks before any work


def _check_flags(resolutions: list[int], out: object, device: str, mode: str, antialias: bool) -> None:
    if not resolutions:
        raise UsageError("give at least one --res")
    if len(set(resolutions)) != len(resolutions):
        raise UsageError("the same --res is given twice")
    if out is not None and len(resolutions) > 1:
        raise UsageError("--out names one folder; with several resolutions leave it out")
    for r in resolutions:
        if type(r) is not int or r <= 0:
            raise UsageError(f"--res must be a positive number of pixels, not {r}")
    if device not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    if antialias and mode not in ANTIALIAS_MODES:
        raise UsageError(f"--antialias works only with --mode {' or '.join(ANTIALIAS_MODES)}, not {mode}")


def _check_res(res: int, patch: int) -> None:
    if res % patch:
        lower, upper = res - res % patch, res - res % patch + patch
        hint = f"use {lower} or {upper}" if lower else f"use {upper}"
        raise UsageError(f"--res {res} is not a multiple of the patch size {patch}; {hint}")


def _check_cost(res: int, grid: int, width: int | None, prefix: int) -> None:
    """Refuse, before allocating anything, a position table too large to be meant."""
    if width is None:
        return
    cost = (prefix + grid * grid) * width * 4
    if cost > MAX_TABLE_BYTES:
        raise UsageError(
            f"--res {res} means a {grid}×{grid} grid and a position table of "
            f"{_human(cost)} (limit {_human(MAX_TABLE_BYTES)}); use a smaller --res"
        )


def _config_width(config: dict[str, Any], family: Family) -> int | None:
    for block in family.vision_config_blocks(config):
        if type(block.get("hidden_size")) is int:
            return int(block["hidden_size"])
    return None


def _check_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise UsageError(
            f"--device cuda: no CUDA GPU is usable here (torch {torch.__version__}); use --device cpu or auto"
        )


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ---------------------------------------------------------------- plan


def _plan(source: Source, family: Family, config: dict[str, Any], sizes: VisionSizes, targets: list[Target]) -> Plan:
    pre_path = source.folder / "preprocessor_config.json"
    preprocessor = read_json(pre_path) if pre_path.is_file() else None
    ckpt = open_checkpoint(source.folder)
    names = ckpt.names
    pos_name = family.find(names, family.pos_suffix)
    if pos_name is None:
        raise InputError(
            f"no vision position table (*{family.pos_suffix}) among the {len(names)} tensors "
            f"(first: {', '.join(names[:3]) or 'none'}); is this a {family.name} vision checkpoint?"
        )
    pos = ckpt.tensor(pos_name)
    prefix = family.num_prefix_tokens
    if pos.dtype not in ("F16", "BF16", "F32", "F64") or len(pos.shape) != 2:
        raise InputError(f"{pos_name} is {pos.dtype} {list(pos.shape)}; expected a float [rows, channels] table")
    rows, width = pos.shape
    grid = grid_side(rows - prefix)
    if grid is None:
        raise InputError(f"{pos_name} has {rows} rows, which is not {prefix} prefix row(s) + a square grid")
    if grid != sizes.grid:
        raise InputError(
            f"config.json says {sizes.image_size} px with {sizes.patch_size}-px patches ({sizes.grid}×{sizes.grid}) "
            f"but {pos_name} holds a {grid}×{grid} grid; the config and the weights disagree"
        )
    for t in targets:
        _check_cost(t.res, t.grid(sizes.patch_size), width, prefix)
    ids = None
    ids_name = family.find(names, family.ids_suffix)
    if ids_name is not None:
        ids = ckpt.tensor(ids_name)
        if ids.dtype not in ("I64", "I32") or ids.shape not in ((rows,), (1, rows)):
            raise InputError(f"{ids_name} is {ids.dtype} {list(ids.shape)}; expected integer ids [1, {rows}]")
    return Plan(source, family, config, preprocessor, sizes, targets, ckpt, pos, ids)


# ---------------------------------------------------------------- write one target


def _new_shapes(plan: Plan, target: Target) -> dict[str, tuple[int, ...]]:
    """Tensors whose shape changes for `target` → their new shape (empty when the grid is the same)."""
    g = target.grid(plan.sizes.patch_size)
    if g == plan.sizes.grid:
        return {}
    rows = plan.family.num_prefix_tokens + g * g
    shapes: dict[str, tuple[int, ...]] = {plan.pos.name: (rows, plan.pos.shape[1])}
    if plan.ids is not None:
        shapes[plan.ids.name] = (1, rows) if len(plan.ids.shape) == 2 else (rows,)
    return shapes


def _out_tensors(plan: Plan, target: Target, compute: Callable[[str], Any]) -> list[list[OutTensor]]:
    shapes = _new_shapes(plan, target)
    files = []
    for shard in plan.checkpoint.shards:
        tensors = []
        for t in shard.tensors:
            if t.name in shapes:
                tensors.append(OutTensor(t.name, t.dtype, shapes[t.name], functools.partial(compute, t.name)))
            elif isinstance(t.data, FileRange):
                tensors.append(OutTensor(t.name, t.dtype, t.shape, t.data))
            else:
                tensors.append(OutTensor(t.name, t.dtype, t.shape, functools.partial(tensor_bytes, t.data)))
        files.append(tensors)
    return files


def _planned_bytes(plan: Plan, target: Target) -> int:
    return sum(sum(t.nbytes for t in f) for f in _out_tensors(plan, target, lambda _n: b""))


def _write_target(
    plan: Plan,
    target: Target,
    device: str,
    mode: str,
    antialias: bool,
    progress: Callable[[int], None],
    worker: Worker | None,
) -> tuple[int, list[str]]:
    """Write one complete output folder; return (bytes written, names of rewritten tensors)."""
    ckpt = plan.checkpoint
    g = target.grid(plan.sizes.patch_size)
    computed: dict[str, Buffer] = {}

    def compute(name: str) -> Buffer:
        if not computed:
            computed.update(_resampled(plan, g, device, mode, antialias, worker))
        return computed[name]

    files = _out_tensors(plan, target, compute)
    try:
        tmp = temp_dir_for(target.out)
    except OSError as e:
        raise _os_error(e, target.out) from e
    written = 0
    try:
        weight_map: dict[str, str] = {}
        # shards made only of copied bytes first: the one that needs torch waits for its import last
        pairs = sorted(zip(ckpt.shards, files, strict=True), key=lambda p: _needs_compute(p[1]))
        for shard, tensors in pairs:
            written += write_file(tmp / shard.out_name, tensors, progress)
            weight_map.update({t.name: shard.out_name for t in tensors})
        if ckpt.index_name:
            index = {
                "metadata": {**ckpt.index_metadata, "total_size": sum(t.nbytes for f in files for t in f)},
                "weight_map": dict(sorted(weight_map.items())),
            }
            written += _write(tmp / ckpt.index_name, dump_json(index))
        written += _write(tmp / "config.json", dump_json(rewrite_config(plan.config, plan.family, target.res)))
        if plan.preprocessor is not None:
            pre = rewrite_preprocessor(plan.preprocessor, target.res)
            written += _write(tmp / "preprocessor_config.json", dump_json(pre))
        written += _write(
            tmp / "README.md", model_card(_card(plan, target, mode, antialias, sorted(computed))).encode()
        )
        written += _carry_over(plan.source.folder, tmp)
        _verify(tmp, ckpt, files, computed)
        land(tmp, target.out)
    except BaseException as e:
        remove(tmp)
        if isinstance(e, OSError):
            raise _os_error(e, target.out) from e
        raise
    return written, sorted(computed)


def _needs_compute(tensors: list[OutTensor]) -> bool:
    return any(not isinstance(t.source, FileRange) for t in tensors)


def _start_worker(plan: Plan) -> Worker | None:
    """A worker process that imports torch while this one copies, when that helps: torch is not
    imported here yet, and the table lies in a file. None means resample in this process."""
    changes = any(t.grid(plan.sizes.patch_size) != plan.sizes.grid for t in plan.targets)
    if not changes or "torch" in sys.modules or not isinstance(plan.pos.data, FileRange):
        return None
    from .worker import Worker

    return Worker.start()


def _resampled(plan: Plan, g: int, device: str, mode: str, antialias: bool, worker: Worker | None) -> dict[str, Buffer]:
    """The bytes of the new position table (and ids) for grid g, in the stored dtypes."""
    s, prefix, pos = plan.sizes, plan.family.num_prefix_tokens, plan.pos
    if worker is not None and isinstance(pos.data, FileRange):
        request = {
            "dtype": pos.dtype,
            "shape": list(pos.shape),
            "new_grid": [g, g],
            "old_grid": [s.grid, s.grid],
            "prefix": prefix,
            "mode": mode,
            "antialias": antialias,
            "device": device,
        }
        table: Buffer = worker.resample(request, read_bytes(pos.data.path, pos.data.start, pos.nbytes))
    else:
        from .interpolate import resample_grid

        new = resample_grid(_load(pos), (g, g), prefix, (s.grid, s.grid), mode, antialias, device)
        table = tensor_bytes(new.contiguous())
    rows = prefix + g * g
    out = {pos.name: table}
    if plan.ids is not None:
        width = DTYPE_SIZES[plan.ids.dtype]
        out[plan.ids.name] = b"".join(i.to_bytes(width, "little") for i in range(rows))
    return out


def _load(t: SourceTensor) -> torch.Tensor:
    if isinstance(t.data, FileRange):
        return tensor_from_bytes(read_bytes(t.data.path, t.data.start, t.nbytes), t.dtype, t.shape)
    return t.data


def _card(plan: Plan, target: Target, mode: str, antialias: bool, rewritten: list[str]) -> CardInfo:
    s = plan.sizes
    return CardInfo(
        source=plan.source.repo_id or plan.source.name,
        repo_id=plan.source.repo_id,
        revision=plan.source.revision,
        old_res=s.image_size,
        new_res=target.res,
        old_grid=s.grid,
        new_grid=target.grid(s.patch_size),
        patch_size=s.patch_size,
        mode=mode,
        antialias=antialias,
        tensors=tuple(rewritten),
        version=__version__,
    )


def _write(path: Path, data: bytes) -> int:
    path.write_bytes(data)
    return len(data)


def _carry_over(src: Path, dst: Path) -> int:
    """Copy every other top-level file (tokenizer, .gitattributes, ...); weights never."""
    n = 0
    for entry in sorted(src.iterdir()):
        name = entry.name
        if name in REWRITTEN_FILES or is_weight_file(name) or not entry.is_file():
            continue
        shutil.copyfile(entry, dst / name)
        n += (dst / name).stat().st_size
    return n


def _verify(tmp: Path, ckpt: Checkpoint, files: list[list[OutTensor]], computed: dict[str, Buffer]) -> None:
    """Re-read what was written: every header parses and matches the plan, and the rewritten
    tensors read back byte for byte."""
    for shard, planned in zip(ckpt.shards, files, strict=True):
        path = tmp / shard.out_name
        got = read_header(path)
        if got.metadata != {"format": "pt"} or [(t.name, t.dtype, t.shape) for t in got.tensors] != [
            (t.name, t.dtype, t.shape) for t in planned
        ]:
            raise OutputError(f"{path.name} was not written as planned; the disk may be failing")
        for t in got.tensors:
            if t.name in computed and read_bytes(path, t.start, t.nbytes) != bytes(computed[t.name]):
                raise OutputError(f"{t.name} did not read back as written; the disk may be failing")


def _os_error(e: OSError, out: Path) -> XcrError:
    import errno

    if e.errno == errno.ENOSPC:
        return OutputError(f"no space left on the device while writing {out}; free space or choose another --out")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {out}: {e.strerror}; choose another --out")
    where = f" ({e.filename})" if e.filename else ""
    return OutputError(f"writing {out} failed: {e.strerror or e}{where}")
