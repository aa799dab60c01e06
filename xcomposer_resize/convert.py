"""The one orchestration: source → plan → write to a temporary folder → verify → land.

`resize()` is the library's entry point; the CLI is a thin face over it.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .configs import (
    PROCESSOR_FILES,
    CardInfo,
    SourceCard,
    VisionSizes,
    dump_json,
    model_card,
    parse_card,
    rewrite_config,
    rewrite_processor,
    vision_sizes,
)
from .errors import InputError, OutputError, UsageError, XcrError, arg
from .families import Family, family_for
from .interpolate import grid_side
from .options import Options, build_options
from .output import Staging, check_output, clean_stale, default_name, identity, output_paths
from .safetensors_io import (
    DTYPE_SIZES,
    Buffer,
    FileRange,
    OutTensor,
    copy_range,
    read_bytes,
    read_header,
    tensor_bytes,
    tensor_from_bytes,
    write_file,
)
from .sources import Checkpoint, SourceTensor, check_readable, is_weight_file, not_a_file, open_checkpoint, read_json
from .text import human_bytes

if TYPE_CHECKING:
    import torch

    from .hub import Source
    from .worker import Worker

DEFAULT_MODEL = "openai/clip-vit-large-patch14-336"
MAX_TABLE_BYTES = 2 << 30  # refuse position tables larger than this (float32)
CARD = "README.md"
REWRITTEN_FILES = ("config.json", *PROCESSOR_FILES, CARD)

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)
NoteFn = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """One output: a resolution, the path as the user named it, the folder it lands in, and the
    identity of what was there when it was checked (what --force may replace)."""

    res: int
    shown: Path
    final: Path
    seen: tuple[int, int] | None = None

    def grid(self, patch: int) -> int:
        return self.res // patch


@dataclass(frozen=True)
class OutputReport:
    path: str
    res: int
    grid: tuple[int, int]


LandedFn = Callable[[OutputReport], None]


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
    sizes: VisionSizes
    targets: list[Target]
    checkpoint: Checkpoint
    pos: SourceTensor  # the position table [prefix + g*g, C]
    ids: SourceTensor | None  # the position-id buffer [1, prefix + g*g], when the checkpoint has one
    processors: dict[str, dict[str, Any]] = field(default_factory=dict)  # processor file name → its JSON
    card: SourceCard | None = None  # the source's README.md
    carried: list[Path] = field(default_factory=list)  # other top-level files, copied as they are
    notes: list[str] = field(default_factory=list)  # what the user should know about the source


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
    """Convert `model` (a folder, or a Hub repo id) to each resolution in `res` (pixels).

    Writes one folder per resolution (`out`, or a name derived from the source's), each a
    complete checkpoint whose config and processor files state the new resolution. Raises
    XcrError subclasses; nothing is left behind for an output that fails.

    `device` defaults to "cpu": CPU bicubic is the one transformers and XComposer compute, bit for
    bit; CUDA's kernel differs by up to one ulp when upsampling (measured on an H100), and the
    table is small enough that the GPU saves nothing. "auto" picks CUDA when present.
    """
    options = build_options(
        model, res, out, force=force, device=device, mode=mode, antialias=antialias, revision=revision, token=token
    )
    return convert(options, quiet=quiet, on_progress=on_progress, on_note=on_note)


def convert(
    options: Options,
    *,
    quiet: bool = True,
    on_progress: ProgressFn | None = None,
    on_note: NoteFn | None = None,
    on_landed: LandedFn | None = None,
) -> Result:
    """`resize()` for an already validated `Options` value. `on_landed` is called with each output
    the instant it is in place (before anything else can interrupt the run)."""
    started = time.perf_counter()
    note = on_note or (lambda _msg: None)

    from .hub import resolve_source

    source = resolve_source(options.model, revision=options.revision, token=options.token, quiet=quiet)
    config = read_json(source.folder / "config.json")
    family = family_for(config)
    sizes = vision_sizes(config, family)
    width = _config_width(config, family)
    if sizes.stated:  # judge --res and --out now, before any weight is downloaded
        targets = [_target(options, source, sizes, width, family.num_prefix_tokens, r) for r in options.resolutions]
        if options.device == "cuda":
            _check_cuda()
        source.fetch_weights()
        plan = _plan(source, family, config, sizes)
    else:  # sizes assumed: first the weights must agree, or every --res hint would be wrong
        source.fetch_weights()
        plan = _plan(source, family, config, sizes)
        note(f"config.json does not state the vision {' and '.join(sizes.missing)}; transformers assumes "
             f"{sizes.image_size} px with {sizes.patch_size}-px patches, which the weights confirm")  # fmt: skip
        targets = [_target(options, source, sizes, width, family.num_prefix_tokens, r) for r in options.resolutions]
        if options.device == "cuda":
            _check_cuda()
    _plan_targets(plan, targets)
    for message in plan.notes:
        note(message)
    if any(t.grid(sizes.patch_size) == sizes.grid for t in targets):
        note(f"the position grid is already {sizes.grid}×{sizes.grid} at {sizes.image_size} px: writing it unchanged")

    total = sum(_planned_bytes(plan, t) for t in targets)
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if on_progress:
            on_progress(done, total)

    reports: list[OutputReport] = []  # what has landed, recorded the instant it landed
    written = 0
    rewritten: set[str] = set()

    def record(target: Target, nbytes: int, names: tuple[str, ...]) -> None:
        nonlocal written
        g = target.grid(sizes.patch_size)
        reports.append(OutputReport(str(target.shown), target.res, (g, g)))
        written += nbytes
        rewritten.update(names)
        if on_landed:
            on_landed(reports[-1])

    worker = _start_worker(plan)
    try:
        for i, target in enumerate(targets):
            interrupts = _write_target(plan, target, options, progress, worker, functools.partial(record, target), note)
            if interrupts and i + 1 < len(targets):
                raise interrupts[0]  # Ctrl-C while this output landed: stop before the next one
        if worker:
            worker.close()
    except BaseException as e:
        if worker:
            worker.kill()
        if len(reports) < len(targets) or not isinstance(e, KeyboardInterrupt):
            if reports:
                _mention_completed(e, [r.path for r in reports])
            raise
        # every output landed and then came Ctrl-C or SIGTERM: the run is done, nothing may undo that
    return Result(
        source=source.display,
        revision=source.revision,
        outputs=reports,
        tensors_rewritten=sorted(rewritten),
        bytes_written=written,
        seconds=time.perf_counter() - started,
    )


def _mention_completed(e: BaseException, paths: list[str]) -> None:
    """Say, on the error that stops a run of several outputs, which outputs are complete."""
    done = ", ".join(paths)
    e.completed = tuple(paths)  # type: ignore[attr-defined]
    if isinstance(e, XcrError):
        e.message = f"{e.message} (already complete: {done})"


# ---------------------------------------------------------------- checks before any work


def _target(options: Options, source: Source, sizes: VisionSizes, width: int | None, prefix: int, res: int) -> Target:
    _check_res(res, sizes.patch_size, width, prefix)
    name = default_name(source.name, sizes.image_size, res)
    shown, final = output_paths(options.out, name)
    check_output(final, shown, source.folder, options.force, suggest=name)
    if clean_stale(final):  # a killed --force run's output was put back: judge the folder again
        check_output(final, shown, source.folder, options.force, suggest=name)
    return Target(res, shown, final, identity(final))


def _largest_grid(width: int, prefix: int) -> int:
    """The side of the largest grid whose float32 table fits in MAX_TABLE_BYTES."""
    cells = MAX_TABLE_BYTES // (4 * width) - prefix
    return math.isqrt(cells) if cells > 0 else 0


def _check_res(res: int, patch: int, width: int | None, prefix: int) -> None:
    """Refuse a resolution the table cannot have: too large first, then not a multiple of the
    patch (suggesting only sizes that would be accepted)."""
    _check_cost(res, patch, width, prefix)
    if res % patch:
        largest = _largest_grid(width, prefix) * patch if width else None
        lower, upper = res - res % patch, res - res % patch + patch
        hints = [str(r) for r in (lower, upper) if r > 0 and (largest is None or r <= largest)]
        raise UsageError(f"{arg('res', res)} is not a multiple of the patch size {patch}; use {' or '.join(hints)}")


def _check_cost(res: int, patch: int, width: int | None, prefix: int) -> None:
    """Refuse, before allocating anything, a position table too large to be meant."""
    if width is None:
        return
    grid = res // patch
    cost = (prefix + grid * grid) * width * 4
    if cost > MAX_TABLE_BYTES:
        raise UsageError(
            f"{arg('res', res)} means a {grid}×{grid} grid and a position table of "
            f"{human_bytes(cost)} (limit {human_bytes(MAX_TABLE_BYTES)}); use a smaller {arg('res')}, "
            f"at most {_largest_grid(width, prefix) * patch}"
        )


def _config_width(config: dict[str, Any], family: Family) -> int | None:
    for block in family.vision_config_blocks(config):
        if type(block.get("hidden_size")) is int and block["hidden_size"] > 0:
            return int(block["hidden_size"])
    return None


def _check_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise UsageError(
            f"{arg('device', 'cuda')}: no CUDA GPU is usable here (torch {torch.__version__}); "
            f"use {arg('device', 'cpu')} or auto"
        )


# ---------------------------------------------------------------- plan


def _plan(source: Source, family: Family, config: dict[str, Any], sizes: VisionSizes) -> Plan:
    """Open the weights, find the position table and check it against the config, read the
    other files: everything but the targets."""
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
        raise InputError(_disagreement(sizes, grid, _patch_of(ckpt, family), pos_name))
    ids = None
    ids_name = family.find(names, family.ids_suffix)
    if ids_name is not None:
        ids = ckpt.tensor(ids_name)
        if ids.dtype not in ("I64", "I32") or ids.shape not in ((rows,), (1, rows)):
            raise InputError(f"{ids_name} is {ids.dtype} {list(ids.shape)}; expected integer ids [1, {rows}]")
    plan = Plan(source, family, config, sizes, [], ckpt, pos, ids)
    _plan_files(plan)
    return plan


def _plan_targets(plan: Plan, targets: list[Target]) -> None:
    """Add the targets, checked against the table's real width and the processor files' forms."""
    for t in targets:
        _check_cost(t.res, plan.sizes.patch_size, plan.pos.shape[1], plan.family.num_prefix_tokens)
    for name, data in plan.processors.items():
        rewrite_processor(data, targets[0].res, name)  # refuse a size form we cannot rewrite, now
    plan.targets = targets


def _patch_of(ckpt: Checkpoint, family: Family) -> int | None:
    """The patch size the weights were made for: the patch embedding's kernel [C, 3, p, p]."""
    name = family.find(ckpt.names, family.patch_suffix)
    shape = ckpt.tensor(name).shape if name else ()
    return shape[-1] if len(shape) == 4 and shape[-1] == shape[-2] else None


def _disagreement(sizes: VisionSizes, grid: int, patch: int | None, pos_name: str) -> str:
    """What is wrong when the config's grid is not the weights', and what to write in the config."""
    weights = f"{pos_name} holds a {grid}×{grid} grid"
    fix = "fix config.json or use the weights it was made for"
    if patch:
        weights += f" of {patch}-px patches ({grid * patch} px)"
        fix = f'set "image_size": {grid * patch}, "patch_size": {patch} in its vision config'
    if sizes.missing:
        said = f"does not state the vision {' and '.join(sizes.missing)}, so transformers assumes"
    else:
        said = "says"
    return (
        f"config.json {said} {sizes.image_size} px with {sizes.patch_size}-px patches ({sizes.grid}×{sizes.grid}) "
        f"but {weights}; the config and the weights disagree: {fix}"
    )


def _plan_files(plan: Plan) -> None:
    """Read the processor files and the model card, and find the files to carry over, checking
    now that every one of them can be read: a source problem is found before gigabytes move."""
    folder = plan.source.folder
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise InputError(f"cannot list the source folder {folder}: {e.strerror or e}; check its permissions") from e
    for entry in entries:
        name = entry.name
        if name == "config.json" or is_weight_file(name) or (entry.is_dir() and not entry.is_symlink()):
            continue  # read already; weights of other formats; subfolders
        what = not_a_file(entry)
        if what and name in REWRITTEN_FILES:
            raise InputError(f"{entry} is {what}; fix or remove it")
        if what:
            plan.notes.append(f"{name} is not carried over: it is {what}")
        elif name in PROCESSOR_FILES:
            plan.processors[name] = read_json(entry)
        elif name == CARD:
            plan.card = parse_card(_read_text(entry))
            if plan.card.problem:
                plan.notes.append(
                    f"the front matter of the source's README.md is not used ({plan.card.problem}): "
                    "its license and other metadata are not in the new model card; the card's text is kept"
                )
        else:
            check_readable(entry)
            plan.carried.append(entry)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}; check its permissions") from e


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
    options: Options,
    progress: Callable[[int], None],
    worker: Worker | None,
    landed: Callable[[int, tuple[str, ...]], None],
    note: NoteFn,
) -> list[BaseException]:
    """Write one complete output folder and land it; `landed(bytes written, rewritten tensor names)`
    records it the instant it is in place. Returns the interruptions held back while it landed."""
    ckpt = plan.checkpoint
    g = target.grid(plan.sizes.patch_size)
    computed: dict[str, Buffer] = {}

    def compute(name: str) -> Buffer:
        if not computed:
            computed.update(_resampled(plan, g, options, worker))
        return computed[name]

    files = _out_tensors(plan, target, compute)
    try:
        staging = Staging.create(target.final)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise _os_error(e, target.shown) from e
        raise OutputError(f"cannot create {target.shown}: {e.strerror or e}; choose another {arg('out')}") from e
    tmp = staging.path
    written = 0
    modes: dict[str, Path] = {}  # output file → the source file whose permissions it takes
    try:
        weight_map: dict[str, str] = {}
        # shards made only of copied bytes first: the one that needs torch waits for its import last
        pairs = sorted(zip(ckpt.shards, files, strict=True), key=lambda p: _needs_compute(p[1]))
        for shard, tensors in pairs:
            written += write_file(tmp / shard.out_name, tensors, progress)
            weight_map.update({t.name: shard.out_name for t in tensors})
            modes[shard.out_name] = shard.source
        if ckpt.index_name:
            index = {
                "metadata": {**ckpt.index_metadata, "total_size": sum(t.nbytes for f in files for t in f)},
                "weight_map": dict(sorted(weight_map.items())),
            }
            written += _write(tmp / ckpt.index_name, dump_json(index))
            modes[ckpt.index_name] = ckpt.shards[0].source
        config_path = plan.source.folder / "config.json"
        config = rewrite_config(plan.config, plan.family, plan.sizes, target.res)
        written += _write(tmp / "config.json", dump_json(config))
        modes["config.json"] = config_path
        for name, data in plan.processors.items():
            written += _write(tmp / name, dump_json(rewrite_processor(data, target.res, name)))
            modes[name] = plan.source.folder / name
        card = model_card(_card(plan, target, options, sorted(computed)), plan.card)
        written += _write(tmp / CARD, card.encode())
        modes[CARD] = plan.source.folder / CARD if plan.card is not None else config_path
        for src in plan.carried:
            written += _copy(src, tmp / src.name)
            modes[src.name] = src
        _verify(tmp, ckpt, files, computed)
        _set_modes(tmp, modes)
        names = tuple(sorted(computed))
        staging.land(options.force, _folder_mode(plan.source.folder), target.seen, lambda: landed(written, names))
    except BaseException as e:
        if staging.landed:  # the output is in place: only what comes after can still fail
            raise
        staging.discard()
        if isinstance(e, OSError):
            raise _os_error(e, target.shown) from e
        raise
    if staging.leftover:
        where, why = staging.leftover
        note(f"{target.shown} replaced the old output, but that could not be deleted ({why}); it is left at {where}")
    return staging.interrupts


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


def _resampled(plan: Plan, g: int, options: Options, worker: Worker | None) -> dict[str, Buffer]:
    """The bytes of the new position table (and ids) for grid g, in the stored dtypes."""
    s, prefix, pos = plan.sizes, plan.family.num_prefix_tokens, plan.pos
    if worker is not None and isinstance(pos.data, FileRange):
        request = {
            "dtype": pos.dtype,
            "shape": list(pos.shape),
            "new_grid": [g, g],
            "old_grid": [s.grid, s.grid],
            "prefix": prefix,
            "mode": options.mode,
            "antialias": options.antialias,
            "device": options.device,
        }
        table: Buffer = worker.resample(request, read_bytes(pos.data.path, pos.data.start, pos.nbytes))
    else:
        from .interpolate import resample_grid

        new = resample_grid(
            _load(pos), (g, g), prefix, (s.grid, s.grid), options.mode, options.antialias, options.device
        )
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


def _card(plan: Plan, target: Target, options: Options, rewritten: list[str]) -> CardInfo:
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
        mode=options.mode,
        antialias=options.antialias,
        tensors=tuple(rewritten),
        version=__version__,
        vision_only=plan.config.get("model_type") == "clip_vision_model",
    )


def _write(path: Path, data: bytes) -> int:
    path.write_bytes(data)
    return len(data)


def _copy(src: Path, dst: Path) -> int:
    """Copy one carried-over file; a failure to read names the source file, not the output."""
    try:
        fin = open(src, "rb")
    except OSError as e:
        raise InputError(f"cannot read {src}: {e.strerror or e}; check its permissions") from e
    with fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        copy_range(fin.fileno(), fout.fileno(), 0, 0, size)
    return size


def _umask() -> int:
    """This process's umask, read without changing it where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def _set_modes(folder: Path, sources: dict[str, Path]) -> None:
    """Give every output file the permissions its source file has, as cp does (the umask applies),
    so private or gated weights never become readable by more people by being converted. The
    owner keeps read and write."""
    umask = _umask()
    for name, src in sources.items():
        try:
            mode = os.stat(src).st_mode & 0o777
        except OSError:
            mode = 0o600
        os.chmod(folder / name, (mode & ~umask) | 0o600)


def _folder_mode(source_folder: Path) -> int:
    try:
        mode = os.stat(source_folder).st_mode & 0o777
    except OSError:
        mode = 0o700
    return (mode & ~_umask()) | 0o700


def _verify(tmp: Path, ckpt: Checkpoint, files: list[list[OutTensor]], computed: dict[str, Buffer]) -> None:
    """Re-read what was written: every header parses and matches the plan, and the rewritten
    tensors read back byte for byte. A failure is the output's (the disk's), never the source's."""
    try:
        _read_back(tmp, ckpt, files, computed)
    except InputError as e:
        raise OutputError(f"the output did not read back as written ({e.message}); the disk may be failing") from e


def _read_back(tmp: Path, ckpt: Checkpoint, files: list[list[OutTensor]], computed: dict[str, Buffer]) -> None:
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
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(
            f"no space left on the device while writing {out}; free space or choose another {arg('out')}"
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {out}: {e.strerror}; choose another {arg('out')}")
    if e.errno == errno.ENAMETOOLONG:
        return UsageError(f"cannot write {out}: a name or the path is too long; choose a shorter {arg('out')}")
    where = f" ({e.filename})" if e.filename else ""
    return OutputError(f"writing {out} failed: {e.strerror or e}{where}")
