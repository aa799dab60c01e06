"""The plan of a conversion: everything known before a byte is written.

`make_plan` opens the weights (headers and records only), finds the position table and checks it
against the config, reads the files to rewrite, lists the files to carry, and lays out the output's
weight files for the options (a vision-only subset, a dtype). `out_tensors` then says, for one
target, where every output tensor's bytes come from: copied, cast, or computed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint.dtypes import DTYPE_SIZES, FLOAT_DTYPES, WORD_DTYPES, tensor_bytes
from ..checkpoint.safetensors import Cast, FileRange, OutTensor
from ..checkpoint.source import is_metadata
from ..checkpoint.weights import (
    BIN_INDEX,
    CONFIG,
    EXPORT_FOLDERS,
    SAFETENSORS,
    SAFETENSORS_INDEX,
    Checkpoint,
    SourceTensor,
    check_readable,
    is_weight_file,
    not_a_file,
    open_checkpoint,
    read_json,
    walk,
)
from ..errors import InputError, arg
from ..families import CONFIG_FILES, PROCESSOR_FILES, TOKEN_NAMES, Family
from ..interpolate import grid_side
from ..size import Grid, Size, grid_text
from .card import CARD, SourceCard, parse_card
from .configs import VisionSizes

if TYPE_CHECKING:
    from ..checkpoint.source import Source
    from ..options import Options

REWRITTEN_FILES = (*CONFIG_FILES, *PROCESSOR_FILES, CARD)
SINGLE_FILE_BYTES = 5 * 10**9  # a vision-only output up to this size is one model.safetensors


@dataclass(frozen=True)
class OutFile:
    """One weight file of the output: its name, the source tensors it holds in order, and the
    source file whose permissions it takes."""

    name: str
    tensors: tuple[SourceTensor, ...]
    source: Path


@dataclass
class Plan:
    """Everything known about the source and the output's layout before a byte is written."""

    source: Source
    family: Family
    config: dict[str, Any]
    sizes: VisionSizes
    options: Options
    checkpoint: Checkpoint
    pos: SourceTensor  # the position table [prefix + g*g, C]
    ids: SourceTensor | None  # the position-id buffer [1, prefix + g*g], when the checkpoint has one
    prefix: int  # the table's rows before the grid (class token, registers)
    config_name: str  # the model config's file: config.json, or open_clip_config.json
    files: list[OutFile] = field(default_factory=list)  # the output's weight files
    index_name: str | None = None  # the output's index file, when it has several weight files
    processors: dict[str, dict[str, Any]] = field(default_factory=dict)  # relative name → processor JSON
    code: dict[str, str] = field(default_factory=dict)  # relative name → a model code file the family rewrites
    card: SourceCard | None = None  # the source's README.md
    carried: list[tuple[Path, str]] = field(default_factory=list)  # (source file, relative name), copied
    notes: list[str] = field(default_factory=list)  # what the user should know about the source

    def out_dtype(self, t: SourceTensor) -> str:
        """The dtype `t` has in the output: --dtype for floating tensors, its own otherwise."""
        if self.options.dtype == "keep" or t.dtype not in FLOAT_DTYPES:
            return t.dtype
        return WORD_DTYPES[self.options.dtype]

    @property
    def writes(self) -> set[str]:
        """Every file an output of this plan holds, relative to its folder."""
        names = {f.name for f in self.files} | set(self.processors) | set(self.code) | {rel for _, rel in self.carried}
        return names | {self.config_name, CARD} | ({self.index_name} if self.index_name else set())


def make_plan(source: Source, family: Family, config: dict[str, Any], sizes: VisionSizes, options: Options,
              config_name: str = CONFIG) -> Plan:  # fmt: skip
    """Open the weights, find the position table and check it against the config, lay out the
    output, read the other files: everything but the targets."""
    source.fetch_weights(family.weight_files)  # a Hub source: downloaded now, once the sizes are checked
    ckpt = open_checkpoint(source.folder, family.weight_files)
    names = ckpt.names
    found = locate(ckpt.shapes, family)
    pos_name = found.pos
    if pos_name is None and family.no_table:
        raise InputError(family.no_table)
    if pos_name is None:
        raise InputError(
            f"no vision position table (*{family.pos_suffix}) among the {len(names)} tensors "
            f"(first: {', '.join(names[:3]) or 'none'}); is this a vision checkpoint of the {family.name} family?"
        )
    pos = ckpt.tensor(pos_name)
    kernel = found.kernel
    sizes = sizes.with_kernel(family, kernel)
    form = "[1, rows, channels]" if family.batched else "[rows, channels]"
    if pos.dtype not in FLOAT_DTYPES or len(pos.shape) != (3 if family.batched else 2) or pos.shape[0] == 0:
        raise InputError(f"{pos_name} is {pos.dtype} {list(pos.shape)}; expected a float {form} table")
    if family.batched and pos.shape[0] != 1:
        raise InputError(f"{pos_name} is {pos.dtype} {list(pos.shape)}; expected a float {form} table")
    rows, _width = pos.shape[-2:]
    cells = sizes.grid[0] * sizes.grid[1]
    prefix = found.prefix(sizes.grid)
    if rows - prefix != cells:
        side = grid_side(rows - prefix)
        if side is None and sizes.image_size.is_square:
            raise InputError(
                f"{pos_name} has {rows} rows, which is not {prefix} prefix row(s) + a square grid"
                + (f"; is --family {options.family} right?" if options.family else "; is this a checkpoint xcr knows?")
            )
        raise InputError(disagreement(sizes, rows - prefix, kernel, pos_name, family, config_name))
    ids = None
    ids_name = found.ids
    if ids_name is not None:
        ids = ckpt.tensor(ids_name)
        if ids.dtype not in ("I64", "I32") or ids.shape not in ((rows,), (1, rows)):
            raise InputError(f"{ids_name} is {ids.dtype} {list(ids.shape)}; expected integer ids [1, {rows}]")
    problem = family.vision_only_problem(names, options.with_projection) if options.vision_only else ""
    if problem:
        raise InputError(
            problem.format(vision_only=arg("vision_only", True), with_projection=arg("with_projection", True))
        )
    plan = Plan(source, family, config, sizes, options, ckpt, pos, ids, prefix, config_name)
    _lay_out(plan)
    _plan_files(plan)
    return plan


def _lay_out(plan: Plan) -> None:
    """The output's weight files: the source's, less the tensors a vision-only output drops (a
    vision-only output that fits in one file is one `model.safetensors`). When tensors are
    dropped or cast, each file holds its widest dtypes first, which keeps every tensor aligned."""
    ckpt, options = plan.checkpoint, plan.options
    keep = functools.partial(plan.family.is_vision_tensor, projection=options.with_projection)
    files = []
    for shard in ckpt.shards:
        tensors = tuple(t for t in shard.tensors if not options.vision_only or keep(t.name))
        if tensors:
            files.append(OutFile(shard.out_name, tensors, shard.source))
    index = ckpt.index_name
    if options.vision_only and index:
        size = sum(_nbytes(plan, t) for f in files for t in f.tensors)
        if size <= SINGLE_FILE_BYTES or len(files) == 1:
            files = [OutFile(SAFETENSORS, tuple(t for f in files for t in f.tensors), files[0].source)]
            index = None
        elif len(files) < len(ckpt.shards):  # renumber: model-00001-of-0000N
            files = [
                OutFile(f"model-{i:05d}-of-{len(files):05d}.safetensors", f.tensors, f.source)
                for i, f in enumerate(files, 1)
            ]
    if options.vision_only or options.dtype != "keep":
        files = [OutFile(f.name, tuple(sorted(f.tensors, key=lambda t: -DTYPE_SIZES[plan.out_dtype(t)])), f.source)
                 for f in files]  # fmt: skip
    plan.files, plan.index_name = files, index


def _nbytes(plan: Plan, t: SourceTensor) -> int:
    return t.nbytes // DTYPE_SIZES[t.dtype] * DTYPE_SIZES[plan.out_dtype(t)]


@dataclass(frozen=True)
class Located:
    """Where a checkpoint keeps what the conversion changes: the vision position table (`pos`, None
    when there is none, with its `rows`), the position-id buffer (`ids`), the patch size of the patch
    embedding's kernel [C, 3, p, p] (`kernel`), and the prefix-token tensors' shapes (`tokens`)."""

    family: Family
    pos: str | None
    rows: int
    ids: str | None
    kernel: int | None
    tokens: dict[str, tuple[int, ...]]

    def prefix(self, grid: Grid) -> int:
        """The table's rows before a `grid` (class token, registers), as the family counts them."""
        if self.pos is None:
            return self.family.num_prefix_tokens
        return self.family.prefix_rows(self.rows, grid[0] * grid[1], self.tokens)


def locate(shapes: dict[str, tuple[int, ...]], family: Family) -> Located:
    """Find the table and its companions among a checkpoint's tensors (name → shape), as `family`
    names them: every reader of checkpoints (plan, verify, plot, inspect) asks this."""
    names = list(shapes)
    pos, ids = family.find(names, family.pos_suffix), family.find(names, family.ids_suffix)
    kernel_name = family.find(names, family.patch_suffix)
    kernel = shapes[kernel_name] if kernel_name else ()
    return Located(
        family, pos, shapes[pos][-2] if pos and shapes[pos] else 0, ids,
        kernel[-1] if len(kernel) == 4 and kernel[-1] == kernel[-2] else None,
        {n: shape for n, shape in shapes.items() if n.endswith(TOKEN_NAMES)},
    )  # fmt: skip


def disagreement(sizes: VisionSizes, cells: int, patch: int | None, pos_name: str, family: Family,
                  config_name: str) -> str:  # fmt: skip
    """What is wrong when the config's grid is not the weights' (`cells` grid rows), and what to
    write in the config."""
    side = grid_side(cells)
    weights = f"{pos_name} holds a {side}×{side} grid" if side else f"{pos_name} holds {cells} grid rows"
    fix = f"fix {config_name} or use the weights it was made for"
    if patch and side:
        weights += f" of {patch}-px patches ({side * patch} px)"
        fix = f'set "image_size": {side * patch}, "patch_size": {patch} in its vision config'
    if sizes.missing:
        said = f"does not state the vision {' and '.join(sizes.missing)}, so {family.library} assumes"
    else:
        said = "says"
    return (
        f"{config_name} {said} {sizes.image_size.px} with {sizes.patch_size}-px patches ({grid_text(sizes.grid)}) "
        f"but {weights}; the config and the weights disagree: {fix}"
    )


def _plan_files(plan: Plan) -> None:
    """Read the processor files (in subfolders too) and the model card, and list the files to carry
    over, checking now that every one can be read: a source problem is found before gigabytes move.
    What is left out (weights of any format, hidden files, export folders, the other layout's files,
    a Hub repo's files that were not downloaded) is named in the notes, with the reason."""
    ckpt = plan.checkpoint
    used = {shard.source.name for shard in ckpt.shards}
    if ckpt.index_name:
        used.add(SAFETENSORS_INDEX if ckpt.weight_format == "safetensors" else BIN_INDEX)
    folders: list[str] = []  # hidden and export folders, `name/`, which walk does not enter
    left: dict[str, list[str]] = {}  # why → what is not carried over
    for entry, rel in walk(plan.source.folder, folders):
        name = entry.name
        if rel == plan.config_name or rel in used:
            continue  # read already
        why = left_out(rel, plan.family, plan.config_name, plan.source.listing is not None)
        if not why and plan.options.vision_only:
            why = plan.family.vision_only_drops(rel)
        if why:
            left.setdefault(why, []).append(rel)
            continue
        what = not_a_file(entry)
        rewritten = rel in REWRITTEN_FILES or name in PROCESSOR_FILES
        if what and rewritten:
            raise InputError(f"{entry} is {what}; fix or remove it")
        if what:
            plan.notes.append(f"{rel} is not carried over: it is {what}")
        elif name in PROCESSOR_FILES:
            plan.processors[rel] = read_json(entry)
        elif rel in plan.family.code_files:
            plan.code[rel] = _read_text(entry)
        elif rel == CARD:
            plan.card = parse_card(_read_text(entry))
            if plan.card.problem:
                plan.notes.append(
                    f"the front matter of the source's README.md is not used ({plan.card.problem}): "
                    "its license and other metadata are not in the new model card; the card's text is kept"
                )
        else:
            check_readable(entry)
            plan.carried.append((entry, rel))
    if plan.options.vision_only:
        plan.processors = plan.family.vision_only_processors(plan.processors)
    for rel in folders:
        left.setdefault(HIDDEN if rel.startswith(".") else EXPORTS, []).append(rel)
    for rel in plan.source.listing or []:  # a Hub repo's files that were not downloaded
        if rel not in used and not (plan.source.folder / rel).exists() and not _inside(rel, folders):
            left.setdefault(left_out(rel, plan.family, plan.config_name, True) or NOT_DOWNLOADED, []).append(rel)
    if left:
        plan.notes.append("not carried over: " + "; ".join(f"{_some(names)} ({why})" for why, names in left.items()))


WEIGHTS = "weights in other formats, at the old size"
HIDDEN = "hidden"
EXPORTS = "other export formats, at the old size"
OTHER_LAYOUT = "the other layout's config, whose weights stay behind"
OTHER_PROCESSOR = "the transformers layout's processor; this layout states its own sizes"
NOT_DOWNLOADED = "not downloaded from the Hub: xcr downloads the weights it reads, configs, processor and tokenizer files, code, the model card and license files"


def left_out(rel: str, family: Family, config_name: str, hub: bool) -> str | None:
    """Why the source file `rel` (a path in the checkpoint folder, or in a Hub repo's listing when
    `hub`) is not carried over to the output, or None when it is (or is rewritten)."""
    *folders, name = rel.split("/")
    if any(f.startswith(".") for f in folders) or (name.startswith(".") and name != ".gitattributes"):
        return HIDDEN  # .env, secrets, .git
    if any(f in EXPORT_FOLDERS for f in folders):
        return EXPORTS
    if rel in CONFIG_FILES and rel != config_name:  # open_clip's config beside transformers' (or the reverse)
        return OTHER_LAYOUT
    if is_weight_file(name):
        return WEIGHTS
    if name in PROCESSOR_FILES and not family.processor_files:
        return OTHER_PROCESSOR
    if hub and not is_metadata(rel):
        return NOT_DOWNLOADED
    return None


def role(rel: str, family: Family, config_name: str, weights: list[str], hub: bool) -> str:
    """What a conversion does with the source file `rel`: reads it (`weights`), rewrites it (the
    config, processor files, the model card), carries it, or leaves it out (`not carried`)."""
    if rel in weights:
        return "weights"
    if left_out(rel, family, config_name, hub):
        return "not carried"
    return "rewritten" if rel in (config_name, CARD) or rel.split("/")[-1] in PROCESSOR_FILES else "carried"


def _inside(rel: str, folders: list[str]) -> bool:
    return any(rel.startswith(f) for f in folders)


def _some(names: list[str]) -> str:
    return f"{', '.join(names[:6])}{', …' if len(names) > 6 else ''}"


def check_processors(plan: Plan, res: Size) -> None:
    """Refuse, before any work, a processor or code file whose size xcr cannot rewrite, or code it needs and lacks."""
    for rel, data in plan.processors.items():
        plan.family.rewrite_processor(data, res, rel, plan.config)
    for rel, text in plan.code.items():
        plan.family.rewrite_code(rel, text, res, plan.sizes.patch_size)
    missing = [name for name in plan.family.code_files if name not in plan.code and not plan.options.vision_only]
    if missing:
        raise InputError(
            f"the source has no {missing[0]}, whose code states the {plan.family.name} tower's size; give the "
            "model folder as it was published, with its code"
        )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}; check its permissions") from e


def new_shapes(plan: Plan, grid: Grid) -> dict[str, tuple[int, ...]]:
    """Tensors whose shape changes for an output of `grid` (rows, columns) → their new shape (none
    when the grid is the same)."""
    if grid == plan.sizes.grid:
        return {}
    rows = plan.prefix + grid[0] * grid[1]
    shapes: dict[str, tuple[int, ...]] = {plan.pos.name: (*plan.pos.shape[:-2], rows, plan.pos.shape[-1])}
    if plan.ids is not None:
        shapes[plan.ids.name] = (1, rows) if len(plan.ids.shape) == 2 else (rows,)
    return shapes


def out_tensors(plan: Plan, grid: Grid, compute: Callable[[str], Any]) -> list[list[OutTensor]]:
    """For each output weight file, its tensors and where their bytes come from: copied from the
    source file (FileRange), converted while copying (Cast), or computed (`compute(name)`)."""
    shapes = new_shapes(plan, grid)
    files = []
    for f in plan.files:
        tensors = []
        for t in f.tensors:
            dtype = plan.out_dtype(t)
            name = plan.family.vision_only_name(t.name) if plan.options.vision_only else t.name
            if t.name in shapes:
                source: Any = functools.partial(compute, t.name)
                tensors.append(OutTensor(name, dtype, shapes[t.name], source))
                continue
            if dtype != t.dtype:
                source = Cast(t.data, t.dtype)
            elif isinstance(t.data, FileRange):
                source = t.data
            else:
                source = functools.partial(tensor_bytes, t.data)
            tensors.append(OutTensor(name, dtype, t.shape, source))
        files.append(tensors)
    return files


def planned_bytes(plan: Plan, grid: Grid) -> int:
    """Bytes of tensor data one output of `grid` holds (what the progress bar counts)."""
    return sum(sum(t.nbytes for t in f) for f in out_tensors(plan, grid, lambda _n: b""))
