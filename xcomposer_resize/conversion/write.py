"""Write one output: every file into a private temporary folder, the record and the card, a read-back
check, the source's permissions; then land it (land.py). What each byte is comes from the plan."""

from __future__ import annotations

import errno
import functools
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint.dtypes import DTYPE_SIZES, DTYPE_WORDS, Buffer, tensor_bytes, torch_dtype
from ..checkpoint.extents import shared_bytes
from ..checkpoint.safetensors import (
    Arranged,
    FileRange,
    OutTensor,
    arrange,
    copy_range,
    read_bytes,
    write_file,
)
from ..checkpoint.source import Source
from ..checkpoint.weights import Checkpoint, load_tensor, open_checkpoint
from ..errors import InputError, OutputError, UsageError, arg
from ..families import Family
from ..interpolate import resample_grid
from ..options import Options, check_res, res_arg
from ..size import Grid, Size
from ..version import __version__
from . import digests, record
from . import worker as workers
from .card import CARD, CardInfo, model_card
from .configs import VisionSizes, changed, changed_lines, dump_json, rewrite_config, set_dtype
from .land import (
    ChangedError,
    Staging,
    check_existing,
    check_place,
    clean_stale,
    default_name,
    folder_mode,
    identity,
    os_error,
    output_paths,
    set_modes,
)
from .plan import Plan, new_shapes, out_tensors

if TYPE_CHECKING:
    from .worker import Worker

NoteFn = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """One output: a resolution, the path as the user named it, the folder it lands in, the
    identity of what was there when it was checked (what --force may replace), what its record
    will say, and whether it is already there (up to date)."""

    res: Size
    shown: Path
    final: Path
    seen: tuple[int, int] | None = None
    want: dict[str, Any] = field(default_factory=dict)
    up_to_date: bool = False

    def grid(self, patch: int) -> Grid:
        return self.res.grid(patch)


def as_is(options: Options, sizes: VisionSizes, res: Size) -> bool:
    """A preset that runs the source as it is, and the source is already that: nothing to write
    (unless the output's form changes: --vision-only, --dtype)."""
    same_form = not options.vision_only and options.dtype == "keep"
    return res in options.as_is and res == sizes.image_size and same_form


def targets(options: Options, resolutions: list[Size], source: Source, sizes: VisionSizes, width: int | None,
             family: Family, fingerprint: str) -> list[Target]:  # fmt: skip
    targets = [_target(options, source, sizes, width, family, r, fingerprint) for r in resolutions]
    seen: dict[Path, Size] = {}
    for t in targets:
        if t.final in seen:
            raise UsageError(
                f"{res_arg(seen[t.final])} and {res_arg(t.res)} would both be written to {t.final}; "
                f"give {arg('out')} a {{res}} that tells them apart"
            )
        seen[t.final] = t.res
    return targets


def _target(options: Options, source: Source, sizes: VisionSizes, width: int | None, family: Family, res: Size,
            fingerprint: str) -> Target:  # fmt: skip
    check_res(res, sizes.patch_size, width, family.num_prefix_tokens)
    name = default_name(source.name, sizes.image_size, res)
    shown, final = output_paths(options.out_for(res), name)
    check_place(final, shown, source.folder, suggest=name)
    clean_stale(final)  # after the checks: a refused run touches nothing
    want = record.wanted(options, source, fingerprint, res, family)
    if not options.force and final.is_dir() and not final.is_symlink() and any(final.iterdir()):
        verdict = record.check(final, want, functools.partial(_source_weights, source, family))
        if verdict.up_to_date:
            return Target(res, shown, final, identity(final), want, up_to_date=True)
        if verdict.reason:
            raise UsageError(
                f"{arg('out', shown)} holds an earlier xcr output that {verdict.reason}; "
                f"pass {arg('force', True)} to replace it"
            )
    check_existing(final, shown, options.force)
    return Target(res, shown, final, identity(final), want)


def _source_weights(source: Source, family: Family) -> Checkpoint:
    """The source's weights, described (a Hub source's downloaded first, when they are not in the cache)."""
    source.fetch_weights(family.weight_files)
    return open_checkpoint(source.folder, family.weight_files)


def config_width(config: dict[str, Any], family: Family) -> int | None:
    for block in family.vision_config_blocks(config):
        if type(block.get("hidden_size")) is int and block["hidden_size"] > 0:
            return int(block["hidden_size"])
    return None


def write_target(
    plan: Plan,
    target: Target,
    progress: Callable[[int], None],
    worker: Worker | None,
    landed: Callable[[Written, tuple[str, ...], bool], None],
    note: NoteFn,
) -> list[BaseException]:
    """Write one complete output folder and land it; `landed(bytes written and shared, rewritten tensor
    names, up to date)` records it the instant it is in place. Returns the interruptions held back
    while it landed."""
    g = target.grid(plan.sizes.patch_size)
    computed: dict[str, Buffer] = {}

    def compute(name: str) -> Buffer:
        if not computed:
            computed.update(_resampled(plan, g, worker))
        return computed[name]

    files = out_tensors(plan, g, compute)
    staging = _staging(target)
    out = _Folder(staging.path, plan.source.folder)
    hashing = digests.pool()
    try:
        _write_metadata(plan, target.res, out)  # first: the weights end waiting for the table
        _write_weights(plan, files, set(new_shapes(plan, g)), out, progress, hashing)
        names, written = _write_card(plan, target, out, computed)
        _verify(out, computed)
        set_modes(out.path, out.modes)
        staging.land(
            plan.options.force, folder_mode(plan.source.folder), target.seen, lambda: landed(written, names, False),
            plan.options.fsync, plan.writes,
        )  # fmt: skip
    except BaseException as e:
        if staging.landed:  # the output is in place: only what comes after can still fail
            raise
        for h in out.hashes.values():
            h.close()
        staging.discard()
        if isinstance(e, ChangedError) and record.check(target.final, target.want, lambda: plan.checkpoint).up_to_date:
            landed(Written(0, 0), (), True)  # another run landed exactly this output first: it is up to date
            return []
        if isinstance(e, OSError):
            raise os_error(e, target.shown) from e
        raise
    finally:
        hashing.shutdown(cancel_futures=True)
    if staging.leftover:
        where, why = staging.leftover
        note(f"{target.shown} replaced the old output, but that could not be deleted ({why}); it is left at {where}")
    return staging.interrupts


@dataclass
class _Folder:
    """An output being written in the private folder `path`: every file written (but the card) with
    its size, for the record; every file and subfolder with the source path whose permissions it takes;
    the digests of the weight files (a header's, or the bytes' hashed as they are written) and their
    layouts, for the read-back; what each rewrite changed (`configs.changed`, `configs.changed_lines`)."""

    path: Path
    source: Path
    sizes: dict[str, int] = field(default_factory=dict)
    modes: dict[str, Path] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, digests.WriteDigest] = field(default_factory=dict)
    layouts: dict[str, Arranged] = field(default_factory=dict)
    settings: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def place(self, rel: str) -> Path:
        """`path / rel`, its subfolders made (taking their source folders' permissions)."""
        parts = rel.split("/")
        for i in range(1, len(parts)):
            sub = "/".join(parts[:i])
            if sub not in self.modes:
                (self.path / sub).mkdir(exist_ok=True)
                self.modes[sub] = self.source / sub
        return self.path / rel


def _staging(target: Target) -> Staging:
    try:
        return Staging.create(target.final)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise os_error(e, target.shown) from e
        raise OutputError(f"cannot create {target.shown}: {e.strerror or e}; choose another {arg('out')}") from e


def _write_weights(plan: Plan, files: list[list[OutTensor]], rewritten: set[str], out: _Folder,
                   progress: Callable[[int], None], hashing: Any) -> None:  # fmt: skip
    """The weight files (those made only of copied bytes first: the one that needs torch waits for its
    import last) and their index. A file of copies and the table is recorded by its header's digest; one
    with bytes of its own (a cast) by its bytes' digest, hashed as they are written."""
    weight_map: dict[str, str] = {}
    for f, tensors in sorted(zip(plan.files, files, strict=True), key=lambda p: _needs_compute(p[1])):
        path, layout = out.path / f.name, arrange(tensors)
        out.layouts[f.name] = layout
        if all(isinstance(t.source, FileRange) or t.name in rewritten for t in tensors):
            out.sizes[f.name] = write_file(path, layout, progress)
            out.weights[f.name] = digests.header_digest(path)
        else:
            out.hashes[f.name] = digests.WriteDigest(path, layout.size, hashing)
            out.sizes[f.name] = write_file(path, layout, progress, out.hashes[f.name].written)
        weight_map.update({t.name: f.name for t in tensors})
        out.modes[f.name] = f.source
    if plan.index_name:
        index = {"metadata": _index_metadata(plan, files), "weight_map": dict(sorted(weight_map.items()))}
        out.sizes[plan.index_name] = _write(out.path / plan.index_name, dump_json(index))
        out.modes[plan.index_name] = plan.files[0].source


def _write_card(plan: Plan, target: Target, out: _Folder,
                computed: dict[str, Buffer]) -> tuple[tuple[str, ...], Written]:  # fmt: skip
    """The model card with its record (every file's size and digest): (the rewritten tensors' names, as
    the output names them; what the output's files hold and share)."""
    named = plan.family.vision_only_name if plan.options.vision_only else str
    names = tuple(sorted(named(n) for n in computed))
    tables = {named(n): record.digest(data) for n, data in computed.items()}
    weights = {**out.weights, **{name: h.result() for name, h in out.hashes.items()}}
    rec = record.make({**target.want, "source_dtypes": _float_dtypes(plan)}, __version__, out.path, out.sizes,
                      tables, weights)  # fmt: skip
    card = model_card(_card(plan, target, names, rec), plan.card)
    written = Written(sum(out.sizes.values()) + _write(out.path / CARD, card.encode()),
                      sum(shared_bytes(out.path / name) for name in out.sizes), out.settings)  # fmt: skip
    out.modes[CARD] = out.source / (CARD if plan.card is not None else plan.config_name)
    return names, written


def _write_metadata(plan: Plan, res: Size, out: _Folder) -> None:
    """The config, processor and code files rewritten for `res`, and the files carried as they are; what
    each rewrite changed (a JSON file's keys, a code file's lines)."""
    folder = plan.source.folder
    before, config = _config(plan, res)
    out.sizes[plan.config_name] = _write(out.path / plan.config_name, dump_json(config))
    out.settings[plan.config_name] = changed(before, config)
    out.modes[plan.config_name] = folder / plan.config_name
    for rel, data in plan.processors.items():
        rewritten = plan.family.rewrite_processor(data, res, rel, plan.config)
        out.sizes[rel] = _write(out.place(rel), dump_json(rewritten))
        out.settings[rel] = changed(data, rewritten)
        out.modes[rel] = folder / rel if (folder / rel).exists() else folder / plan.config_name  # a tower's, made
    for rel, code in plan.code.items():
        text = plan.family.rewrite_code(rel, code, res, plan.sizes.patch_size)
        out.sizes[rel] = _write(out.place(rel), text.encode())
        out.settings[rel] = changed_lines(code, text)
        out.modes[rel] = folder / rel
    for src, rel in plan.carried:
        out.sizes[rel] = _copy(src, out.place(rel))
        out.modes[rel] = src


@dataclass(frozen=True)
class Written:
    """What an output's files hold (`total` bytes), how many of those bytes lie in disk blocks they
    share with the source (`shared`: cloned by the file system, taking no new space), and what the
    rewrite changed in each file (file → dotted key or "line N" → [before, after])."""

    total: int
    shared: int
    settings: dict[str, dict[str, list[Any]]] = field(default_factory=dict)


def _index_metadata(plan: Plan, files: list[list[OutTensor]]) -> dict[str, Any]:
    """The source index's metadata with the totals it states recomputed for the output: `total_size`
    (bytes of tensor data) always, `total_parameters` when the source states it, counted as
    transformers' save_pretrained counts it (`model.num_parameters()`: the values of the
    floating-point tensors; the integer position ids are buffers, not parameters)."""
    tensors = [t for f in files for t in f]
    metadata = {**plan.checkpoint.index_metadata, "total_size": sum(t.nbytes for t in tensors)}
    if "total_parameters" in metadata:
        metadata["total_parameters"] = sum(math.prod(t.shape) for t in tensors if t.dtype.startswith(("F", "BF")))
    return metadata


def _config(plan: Plan, res: Size) -> tuple[dict[str, Any], dict[str, Any]]:
    """config.json of an output at `res` (the vision sizes, the dtype), and the config it was made from:
    the source's, or with --vision-only the tower's config lifted out of it."""
    config, sizes = plan.config, plan.sizes
    if plan.options.vision_only:
        config = plan.family.vision_only_config(config, plan.options.with_projection, plan.checkpoint.shapes)
    new = rewrite_config(config, plan.family, sizes, res)
    if plan.options.dtype == "keep" or not plan.family.states_dtype:
        return config, new  # timm and open_clip take the dtype from the weights; their configs state none
    return config, set_dtype(new, plan.options.dtype)


def _needs_compute(tensors: list[OutTensor]) -> bool:
    return any(callable(t.source) for t in tensors)


def start_worker(plan: Plan, targets: list[Target]) -> Worker | None:
    """A worker process that imports torch while this one copies, when that helps: torch is not
    imported here yet, nothing here will need it (a --dtype cast does), and the table lies in a
    file. None means resample in this process."""
    changes = any(t.grid(plan.sizes.patch_size) != plan.sizes.grid for t in targets)
    casts = any(plan.out_dtype(t) != t.dtype for f in plan.files for t in f.tensors)
    if not changes or casts or "torch" in sys.modules or not isinstance(plan.pos.data, FileRange):
        workers.discard_early()
        return None
    return workers.take()


def _resampled(plan: Plan, g: Grid, worker: Worker | None) -> dict[str, Buffer]:
    """The bytes of the new position table (in the output's dtype) and ids for grid g (rows, columns)."""
    s, prefix, pos, options = plan.sizes, plan.prefix, plan.pos, plan.options
    out_dtype = plan.out_dtype(pos)
    if worker is not None and isinstance(pos.data, FileRange):
        request = {
            "dtype": pos.dtype,
            "out_dtype": out_dtype,
            "shape": list(pos.shape),
            "new_grid": list(g),
            "old_grid": list(s.grid),
            "prefix": prefix,
            "mode": options.interpolation[0],
            "antialias": options.interpolation[1],
            "device": options.device,
        }
        table: Buffer = worker.resample(request, read_bytes(pos.data.path, pos.data.start, pos.nbytes))
    else:
        new = resample_grid(load_tensor(pos), g, prefix, s.grid, *options.interpolation,
                            options.device, torch_dtype(out_dtype))  # fmt: skip
        table = tensor_bytes(new.contiguous())
    rows = prefix + g[0] * g[1]
    out = {pos.name: table}
    if plan.ids is not None:
        width = DTYPE_SIZES[plan.ids.dtype]
        out[plan.ids.name] = b"".join(i.to_bytes(width, "little") for i in range(rows))
    return out


def _card(plan: Plan, target: Target, rewritten: tuple[str, ...], rec: dict[str, Any]) -> CardInfo:
    s, options = plan.sizes, plan.options
    vision_only = options.vision_only or not plan.family.has_text or plan.family.vision_only_form(plan.config)[0]
    return CardInfo(
        source=plan.source.repo_id or plan.source.name,
        repo_id=plan.source.repo_id,
        revision=plan.source.revision,
        old_res=s.image_size,
        new_res=target.res,
        old_grid=s.grid,
        new_grid=target.grid(s.patch_size),
        patch_size=s.patch_size,
        mode=options.interpolation[0],
        antialias=options.interpolation[1],
        tensors=rewritten,
        version=__version__,
        vision_only=vision_only,
        architecture=plan.family.vision_architecture(plan.config, options.with_projection)
        if options.vision_only
        else None,
        dtype=options.dtype if options.dtype != "keep" else None,
        source_dtype=_dtype_words(plan),
        record=rec,
        family=plan.family.name,
        library=plan.family.library,
        pipeline=plan.family.pipeline,
        loader=plan.family.loader,
        config_file=plan.config_name,
        processors=bool(plan.processors),
        prefix=plan.prefix,
        runtime=plan.family.runtime,
    )


def _float_dtypes(plan: Plan) -> list[str]:
    """The floating dtypes of the source tensors the output holds: ["float32"]."""
    return sorted({DTYPE_WORDS[t.dtype] for f in plan.files for t in f.tensors if t.dtype in DTYPE_WORDS})


def _dtype_words(plan: Plan) -> str:
    return ", ".join(_float_dtypes(plan)) or "no floating tensors"


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


def _verify(out: _Folder, computed: dict[str, Buffer]) -> None:
    """Re-read what was written: every weight file's header is the one laid out, byte for byte, and so
    are the rewritten tensors. A failure is the output's (the disk's), never the source's."""
    try:
        for name, layout in out.layouts.items():
            path = out.path / name
            if os.path.getsize(path) != layout.size or read_bytes(path, 0, len(layout.header)) != layout.header:
                raise OutputError(f"{name} was not written as planned; the disk may be failing")
            at = len(layout.header)
            for t in layout.tensors:
                if t.name in computed and read_bytes(path, at, t.nbytes) != computed[t.name]:
                    raise OutputError(f"{t.name} did not read back as written; the disk may be failing")
                at += t.nbytes
    except InputError as e:
        raise OutputError(f"the output did not read back as written ({e.message}); the disk may be failing") from e
