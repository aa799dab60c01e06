"""`xcr verify`: proof that an output is what its record says, before days of fine-tuning.

Five checks, each reported by name with pass/fail and its figure:

1. files: every weight file parses with the `safetensors` library (the reference implementation)
   and with xcr's own reader, and the index covers every tensor and states true totals;
2. tensors: the output holds the source's tensors (a vision-only output: the vision tower's), no
   more, no fewer; every one but the position table and ids is byte-identical to the source's (or
   equal to it after the recorded cast); the position ids are arange over the table's rows;
3. table: the position table equals a fresh resample of the source's, with the recorded method;
4. configs: every file but the weights against the source's (the model config and the processor
   files key by key, the keys xcr rewrote apart and checked for what they state; the other files
   byte for byte); a dtype the config states is the weights'; config.json, the processor files and
   the weights agree on the resolution;
5. load: (transformers) the output loads with no missing, unexpected or mismatched keys, its image
   processor makes N×N pixels, and its forward pass at N×N equals the source's with
   `interpolate_pos_encoding=True`.

Each check after `files` is one function registered with `@check` (in this order), given a
`Subject`: the output and its source, read once.

The byte-level checks stream (32 MiB at a time: memory stays flat); only the forward pass holds
the models. `images=` adds the drift: how far the resize alone moves each image's embedding.
"""

from __future__ import annotations

import copy
import filecmp
import json
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint.safetensors import (
    DTYPE_SIZES,
    DTYPE_WORDS,
    FLOAT_DTYPES,
    WORD_DTYPES,
    FileRange,
    read_bytes,
    read_header,
    tensor_bytes,
    tensor_from_bytes,
    torch_dtype,
)
from ..checkpoint.source import is_metadata, resolve_source
from ..checkpoint.weights import (
    SAFETENSORS_INDEX,
    Checkpoint,
    SourceTensor,
    is_weight_file,
    load_tensor,
    not_a_file,
    open_checkpoint,
    read_json,
    walk,
)
from ..conversion import record
from ..conversion.configs import DTYPE_KEYS, VisionSizes, vision_sizes
from ..conversion.plan import locate
from ..errors import InputError, UsageError, XcrError, arg
from ..families import CONFIG_FILES, Family, VlmFamily, family_named, model_config, timm_arch
from ..families.transformers import PROCESSOR_FILES, SIZE_KEYS
from ..interpolate import resample_grid
from ..size import Grid, Size, grid_text

if TYPE_CHECKING:
    from ..checkpoint.source import Source

CARD = "README.md"  # the model card: xcr writes its own
CHUNK = 32 << 20
# cosine similarity a forward pass must reach when the output's weights are stored in fewer bits
# than float32 (compared in float32): what rounding every weight to that many mantissa bits costs
TOLERANCE = {"F16": 0.9995, "BF16": 0.995}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
VERIFY_EXTRA = "pip install 'xcomposer-resize[verify]'"


@dataclass
class Check:
    """One check: passed (True), failed (False) or skipped (None), and its figure."""

    check: str
    ok: bool | None
    detail: str


@dataclass
class Drift:
    """How far the resize alone moves image embeddings: cosine similarity of the source's embedding
    at its own resolution and the output's at the new one, over `images` images."""

    images: int
    mean: float
    min: float
    worst: list[dict[str, Any]] = field(default_factory=list)  # [{file, cosine}], lowest first


@dataclass
class Verification:
    """What `verify` found; `to_json()` is the CLI's --json object."""

    output: str
    source: str
    revision: str | None
    res: Size
    checks: list[Check]
    drift: Drift | None = None

    @property
    def ok(self) -> bool:
        """Every check that ran passed (skipped ones do not count)."""
        return all(c.ok is not False for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.check for c in self.checks if c.ok is False]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["res"] = self.res.json()
        data["ok"] = self.ok
        return data


@dataclass
class _Made:
    """How the output was made: from its record, or assumed (the defaults) without one."""

    mode: str
    antialias: bool
    dtype: str  # "keep" or a dtype word
    device: str
    recorded: bool
    vision_only: bool = False  # the vision tower alone (the record's, else what the config says)
    with_projection: bool = False


@dataclass
class Subject:
    """What every check looks at: the output and its source, read once. `out_ckpt` is None when the
    output's files did not parse (the files check failed)."""

    folder: Path
    family: Family
    config: dict[str, Any]  # the output's model config
    res: Size  # the resolution the output is meant for
    grid: Grid
    prefix: int  # prefix rows of the table (class token, registers)
    config_problem: str | None  # what is wrong with the config's sizes, found while reading them
    expected: _Expected
    src_grid: Grid
    out_ckpt: Checkpoint | None

    @property
    def made(self) -> _Made:
        return self.expected.made


# The checks after `files`, in order: (name, needs the output's weights parsed, the check). A new check
# is one function decorated with @check.
CHECKS: list[tuple[str, bool, Callable[[Subject], Check | None]]] = []


Run = Callable[[Subject], Check | None]


def check(name: str, needs_files: bool = False) -> Callable[[Run], Run]:
    """Register a check under `name`; `needs_files`: it reads the output's tensors. A check returns
    None where it does not apply (it is then not reported)."""

    def register(run: Run) -> Run:
        CHECKS.append((name, needs_files, run))
        return run

    return register


def verify(
    out: str | Path,
    against: str | Path | None = None,
    *,
    revision: str | None = None,
    token: str | None = None,
    images: str | Path | None = None,
    family: str | None = None,
    quiet: bool = True,
) -> Verification:
    """Check the output folder `out` against its source: the one its record names (a Hub repo at
    the recorded commit), or `against` (a folder or a repo id; required for an output made from a
    local folder, whose card does not record paths). Raises XcrError for what cannot be checked
    at all (no such folder, no source); failed checks are reported, not raised."""
    for name, value in (("OUT", out), ("against", against), ("images", images)):
        if value is not None and not str(value).strip():
            raise UsageError(f"{name if name == 'OUT' else arg(name)} is empty; give a folder")
    folder = Path(out).expanduser()
    if not folder.exists():
        raise InputError(f"{folder} does not exist; give the folder xcr resize wrote")
    if not any((folder / name).is_file() for name in CONFIG_FILES):
        raise InputError(f"{folder} is not a checkpoint folder (it has no config.json); give an xcr output")
    rec = record.read(folder)
    config, adapter = _output_config(folder, rec, family)
    source = _source(folder, rec, against, revision, token, quiet, adapter.weight_files)
    if source.folder.resolve() == folder.resolve():
        raise UsageError(f"{folder} is checked against itself; give {arg('against')} the checkpoint it was made from")
    src_config = _source_config(source, folder, adapter)
    src_sizes = vision_sizes(src_config, adapter)
    res, grid, config_problem = _meant(folder, config, adapter, rec, src_sizes.patch_size)
    made = _made(rec, adapter, config, src_config)
    files = _check_files(folder)
    src_ckpt = open_checkpoint(source.folder, adapter.weight_files)
    subject = Subject(
        folder=folder,
        family=adapter,
        config=config,
        res=res,
        grid=grid,
        prefix=_prefix(adapter, src_ckpt, src_sizes.grid),
        config_problem=config_problem,
        expected=_Expected(source, src_config, src_ckpt, src_sizes.patch_size, made),
        src_grid=src_sizes.grid,
        out_ckpt=open_checkpoint(folder, adapter.weight_files) if files.ok else None,
    )
    checks = [files]
    with _quiet_transformers():
        for name, needs_files, run in CHECKS:
            if needs_files and subject.out_ckpt is None:
                checks.append(Check(name, None, "not run: the files did not parse"))
            elif (done := run(subject)) is not None:
                checks.append(done)
        drift = _drift(folder, source.folder, config, adapter, Path(images)) if images is not None else None
    return Verification(str(folder), source.display, source.revision, res, checks, drift)


def _output_config(folder: Path, rec: dict[str, Any] | None, forced: str | None) -> tuple[dict[str, Any], Family]:
    """The output's model config and family: the family its record names (the one the source was
    read as) when its config now names another (an edited model_type, a config of another layout
    added): the configs check then says what changed, instead of the source being called another
    family's."""
    _name, config, family = record.detect(folder, forced)
    name = rec.get("family") if rec and forced is None else None
    try:
        recorded = family_named(name) if isinstance(name, str) else None
    except XcrError:
        recorded = None
    if recorded is None or recorded.name == family.name:
        return config, family
    try:
        _name, config, family = model_config(folder, recorded.name)  # its own layout's config file
        return config, family
    except XcrError:
        return config, recorded.for_config(config)


def _source_config(source: Source, folder: Path, family: Family) -> dict[str, Any]:
    """The source's model config, read as the output's family; a source of another family is not
    the one the output was made from."""
    try:
        return model_config(source.folder, family.name)[1]
    except UsageError:  # the source's config names another family
        other = model_config(source.folder)[2]
        raise InputError(
            f"{source.display} is a checkpoint of the {other.name} family, and {folder} one of the {family.name} "
            f"family: it is not the source {folder} was made from; give {arg('against')} that source"
        ) from None


def _prefix(family: Family, src: Checkpoint, grid: Grid) -> int:
    """The rows before the grid in the source's table (timm: what the table holds beyond its grid)."""
    return locate(src.shapes, family).prefix(grid)


def _meant(folder: Path, config: dict[str, Any], family: Family, rec: dict[str, Any] | None,
           patch: int) -> tuple[Size, Grid, str | None]:  # fmt: skip
    """The resolution and grid the output is meant to have: its record's (else its config's), with
    the source's patch size; and what is wrong with its config, for the configs check to report."""
    try:
        sizes: VisionSizes | None = vision_sizes(config, family)
        problem = None
    except InputError as e:
        sizes, problem = None, e.message
    recorded = Size.from_json(rec.get("res")) if rec else None
    if recorded is not None:
        res = recorded
    elif sizes is not None:
        res = sizes.image_size
    else:
        raise InputError(f"{folder}: {problem}; without an xcr record its resolution is not known either")
    return res, res.grid(patch), problem


def _source(folder: Path, rec: dict[str, Any] | None, against: str | Path | None, revision: str | None,
            token: str | None, quiet: bool, prefer: tuple[str, ...]) -> Source:  # fmt: skip

    if against is not None:
        source = resolve_source(str(against), revision=revision, token=token, quiet=quiet)
    elif rec is None:
        raise UsageError(
            f"{folder} has no xcr record in its model card, so its source is not known; give {arg('against')} SRC"
        )
    elif str(rec.get("source_fingerprint", "")).startswith("files:"):
        raise UsageError(
            f"{folder} was made from a local folder ({rec.get('source')}), which its card does not record by path; "
            f"give {arg('against')} PATH"
        )
    else:
        source = resolve_source(str(rec["source"]), revision=revision or rec.get("revision"), token=token, quiet=quiet)
    source.fetch_weights(prefer)
    return source


def _made(rec: dict[str, Any] | None, family: Family, config: dict[str, Any], src_config: dict[str, Any]) -> _Made:
    if rec is None:  # not an xcr output (or an older one): the family's defaults, said in the details
        # the vision tower alone when the config is a vision tower's and the source's is not
        alone, projection = family.vision_only_form(config)
        alone = alone and not family.vision_only_form(src_config)[0]
        return _Made(family.mode, family.antialias, "keep", "cpu", False, alone, alone and projection)
    return _Made(str(rec.get("mode", "bicubic")), bool(rec.get("antialias")), str(rec.get("dtype", "keep")),
                 str(rec.get("device", "cpu")), True, bool(rec.get("vision_only")),
                 bool(rec.get("with_projection")))  # fmt: skip


# ---------------------------------------------------------------- 1. files


def _check_files(folder: Path) -> Check:
    """Every weight file parses with the safetensors library and with xcr's reader; the index (if
    any) maps every tensor, and only those, to the file that holds it."""
    safe_open: Any = None
    try:
        from safetensors import safe_open
    except ImportError:
        pass
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".safetensors"))
    if not names:
        return Check("files", False, "no .safetensors weights in the folder")
    held: dict[str, str] = {}
    nbytes = parameters = 0
    for name in names:
        try:
            header = read_header(folder / name)
            entries, ours = header.tensors, {t.name for t in header.tensors}
            if header.metadata.get("format") != "pt":  # transformers 4 refuses a file without it, reads "tf" as TF's
                return Check("files", False, f'{name}\'s header has metadata {json.dumps(header.metadata)}, not '
                             '{"format": "pt"}, which transformers 4 needs to read it as PyTorch weights')  # fmt: skip
            if safe_open is not None:
                with safe_open(str(folder / name), framework="pt") as f:
                    theirs = set(f.keys())
                if theirs != ours:
                    return Check("files", False, f"{name}: the safetensors library and xcr read different tensors")
        except InputError as e:
            return Check("files", False, e.message)
        except Exception as e:  # the safetensors library's own errors
            return Check("files", False, f"{name}: the safetensors library refuses it ({type(e).__name__}: {e})")
        for t in ours:
            if t in held:
                return Check("files", False, f"{t} is in both {held[t]} and {name}")
            held[t] = name
        nbytes += sum(t.end - t.start for t in entries)
        parameters += sum(math.prod(t.shape) for t in entries if _is_parameter(t.dtype))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        problem = _index_problem(index, names, held, nbytes, parameters)
        if problem:
            return Check("files", False, problem)
    elif len(names) > 1:
        return Check("files", False, f"{len(names)} weight files but no model.safetensors.index.json")
    reader = "the safetensors library and xcr's reader" if safe_open is not None else "xcr's reader"
    return Check("files", True, f"{len(names)} file(s), {len(held)} tensors: valid for {reader}"
                 + (", the index covers every tensor and its totals are right" if index.is_file() else ""))  # fmt: skip


def _index_problem(index: Path, names: list[str], held: dict[str, str], nbytes: int, parameters: int) -> str | None:
    """What is wrong with the index: invalid, wrong totals, or not mapping each tensor to its file."""
    try:
        data = json.loads(index.read_text())
        weight_map, metadata = data["weight_map"], data.get("metadata", {})
        if not isinstance(weight_map, dict) or not isinstance(metadata, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{index.name} is not a valid index ({type(e).__name__})"
    for key, value, what in (("total_size", nbytes, "bytes of tensors"), ("total_parameters", parameters,
                              "parameters (values of floating-point tensors)")):  # fmt: skip
        if key in metadata and metadata[key] != value:
            return f"{index.name} has metadata.{key} {json.dumps(metadata[key])}; the files hold {value} {what}"
    if weight_map != held:
        lost = sorted({str(v) for v in weight_map.values()} - set(names))
        if lost:
            return f"{', '.join(lost[:3])} is missing (named in {index.name})"
        wrong = sorted(set(weight_map.items()) ^ set(held.items()))[:2]
        shown = ", ".join(f"{t} in {f}" for t, f in wrong)
        return f"{index.name} does not map the tensors the files hold (e.g. {shown})"
    return None


def _is_parameter(dtype: str) -> bool:
    """A tensor of this dtype counts as parameters in an index's `total_parameters`: transformers
    counts `model.num_parameters()`, the floating-point parameters; the integer buffers (position
    ids) are not parameters."""
    return dtype.startswith(("F", "BF"))


def _stored_dtypes(folder: Path) -> set[str]:
    """The dtypes the output's weight files store their floating-point tensors in (headers only)."""
    found: set[str] = set()
    for path in folder.glob("*.safetensors"):
        try:
            found |= {t.dtype for t in read_header(path).tensors if _is_parameter(t.dtype)}
        except InputError:
            pass
    return found


# ---------------------------------------------------------------- 2. tensors


@check("tensors", needs_files=True)
def _check_tensors(subject: Subject) -> Check:
    """The output holds exactly the source's tensors (a vision-only output: the vision tower's, with
    its projection when recorded). Every one but the table and ids: the source's bytes (or the
    source's values cast as recorded), compared in chunks. The ids: arange over the table's rows."""
    family, src, out, made = subject.family, subject.expected.ckpt, subject.out_ckpt, subject.made
    assert out is not None
    found = locate(out.shapes, family)
    pos_name, ids_name = found.pos, found.ids
    named = family.vision_only_name if made.vision_only else str  # a VLM's tower alone: its bare layout's names
    source = {named(t.name): t for s in src.shards for t in s.tensors}
    kept = [named(n) for n in src.names if not made.vision_only or family.is_vision_tensor(n, made.with_projection)]
    compared = 0
    nbytes = 0
    bad: list[str] = []
    missing = [n for n in kept if n not in set(out.names)]
    if missing:
        what = "the vision tower's tensors" if made.vision_only else "the source's tensors"
        bad.append(f"{len(missing)} of {what} are missing ({_some(missing)})")
    extra = [n for n in out.names if n not in set(kept)]
    if extra:
        dropped = [n for n in extra if n in source]  # the source's, but not the vision tower's
        bad += [f"{len(dropped)} tensor(s) outside the vision tower" + (" and its projection" if made.with_projection
                else "") + f" ({_some(dropped)}), which a vision-only output drops"] if dropped else []  # fmt: skip
        foreign = [n for n in extra if n not in source]
        bad += [f"{len(foreign)} tensor(s) the source does not have ({_some(foreign)})"] if foreign else []
    shapes = 0
    for shard in out.shards:
        for t in shard.tensors:
            if t.name == pos_name or t.name not in source:
                continue
            s = source[t.name]
            if t.name == ids_name:
                bad += _ids_problems(t, s, out.tensor(pos_name).shape[-2] if pos_name else None)
                continue
            cast = t.dtype != s.dtype
            if s.shape != t.shape or (cast and (t.dtype not in FLOAT_DTYPES or s.dtype not in FLOAT_DTYPES)):
                shapes += s.shape != t.shape
                bad.append(f"{t.name} is {t.dtype} {list(t.shape)}, the source's {s.dtype} {list(s.shape)}")
                continue
            recorded = made.dtype if made.dtype != "keep" else DTYPE_WORDS.get(s.dtype)
            if made.recorded and t.dtype in FLOAT_DTYPES and DTYPE_WORDS.get(t.dtype) != recorded:
                bad.append(f"{t.name} is {DTYPE_WORDS.get(t.dtype)}, but the record says dtype {made.dtype}")
                continue
            compared += 1
            nbytes += t.nbytes
            if not _same(s, t):
                bad.append(f"{t.name} differs from the source" + (" after the cast" if cast else ""))
    if bad:
        hint = ""
        if shapes > 1:  # more than one changed shape: another model, not a damaged tensor
            hint = " (the source's shapes are another model's: is it the checkpoint this output was made from?)"
        return Check("tensors", False, f"{len(bad)} problem(s): {'; '.join(bad[:3])}{hint}")
    how = "equal to the source's values cast" if made.dtype != "keep" else "byte-identical to the source"
    arange = "; the position ids are arange over the table's rows" if ids_name else ""
    subset = " (the vision tower's" + (" and its projection" if made.with_projection else "") + ")"
    return Check("tensors", True, f"the source's {len(kept)} tensors{subset if made.vision_only else ''}, no more, "
                 f"no fewer; {compared} ({nbytes / 2**20:,.1f} MiB) {how}{arange}")  # fmt: skip


def _ids_problems(t: SourceTensor, s: SourceTensor, rows: int | None) -> list[str]:
    """The output's position ids `t` against the source's `s`: the same dtype and form, counting
    the output table's `rows` rows: arange(rows)."""
    import torch

    if rows is None:
        return []  # no table: the missing tensors say so
    want = (*s.shape[:-1], rows)
    if t.dtype != s.dtype or t.shape != want:
        return [f"{t.name} is {t.dtype} {list(t.shape)}; the table has {rows} rows, so the ids must be "
                f"{s.dtype} {list(want)}"]  # fmt: skip
    ids = load_tensor(t)
    if not torch.equal(ids.reshape(-1), torch.arange(rows, dtype=ids.dtype)):
        return [f"{t.name} is not arange({rows})"]
    return []


def _some(names: list[str], n: int = 3) -> str:
    """The first `n` of `names`, and how many more."""
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _chunks(t: SourceTensor, elems: int) -> Iterator[Any]:
    """`t`'s values, `elems` at a time, as flat tensors."""
    numel = math.prod(t.shape)
    size = DTYPE_SIZES[t.dtype]
    for i in range(0, numel, elems):
        n = min(elems, numel - i)
        if isinstance(t.data, FileRange):
            yield tensor_from_bytes(read_bytes(t.data.path, t.data.start + i * size, n * size), t.dtype, (n,))
        else:
            yield t.data.reshape(-1)[i : i + n]


def _same(src: SourceTensor, out: SourceTensor) -> bool:

    elems = max(1, CHUNK // max(DTYPE_SIZES[src.dtype], DTYPE_SIZES[out.dtype]))
    for a, b in zip(_chunks(src, elems), _chunks(out, elems), strict=True):
        if src.dtype != out.dtype:
            a = a.to(torch_dtype(out.dtype))
        if bytes(tensor_bytes(a.contiguous())) != bytes(tensor_bytes(b.contiguous())):
            return False
    return True


# ---------------------------------------------------------------- 3. table


@check("table", needs_files=True)
def _check_table(subject: Subject) -> Check:
    """The output's table (grid `g1`) against a fresh resample of the source's (grid `g0`), with the
    recorded method."""
    family, src, out, made = subject.family, subject.expected.ckpt, subject.out_ckpt, subject.made
    g0, g1, prefix = subject.src_grid, subject.grid, subject.prefix
    assert out is not None
    import torch

    src_name, out_name = locate(src.shapes, family).pos, locate(out.shapes, family).pos
    if src_name is None or out_name is None:
        return Check("table", False, "no vision position table in the " + ("source" if src_name is None else "output"))
    old, new = src.tensor(src_name), out.tensor(out_name)
    if old.shape[-1] != new.shape[-1] or len(old.shape) != len(new.shape):
        return Check("table", False, f"{out_name} is {list(new.shape)} and the source's {src_name} {list(old.shape)}: "
                     f"another width (or form), so the output was not made from this source")  # fmt: skip
    dtype = WORD_DTYPES.get(made.dtype, old.dtype)  # the recorded cast's, else the source's
    if new.dtype != dtype:
        said = f"the record says dtype {made.dtype}" if made.dtype != "keep" else f"the source's is {old.dtype}"
        return Check("table", False, f"{out_name} is stored in {new.dtype}, but {said}")
    if old.shape[-2] - prefix != g0[0] * g0[1]:
        return Check("table", False, f"the source's {src_name} does not hold its config's {grid_text(g0)} grid")
    if new.shape[-2] - prefix != g1[0] * g1[1]:
        return Check(
            "table", False, f"{out_name} has {new.shape[-2] - prefix} grid rows; the config says {grid_text(g1)}"
        )
    device = made.device if made.device != "cuda" or torch.cuda.is_available() else "cpu"
    fresh = resample_grid(load_tensor(old), g1, prefix, g0, made.mode, made.antialias, device,
                          torch_dtype(new.dtype))  # fmt: skip
    got = load_tensor(new)
    method = f"{made.mode}{', antialias' if made.antialias else ''}" + (
        "" if made.recorded else " (assumed: no record)"
    )
    what = f"a fresh {method} resample of the source's {grid_text(g0)} table to {grid_text(g1)}"
    if torch.equal(fresh, got):
        return Check("table", True, f"equals {what}, bit for bit")
    diff = (fresh.float() - got.float()).abs().max().item()
    if made.device == "cuda" and device == "cpu" and diff <= 1e-5 * max(1.0, fresh.float().abs().max().item()):
        return Check("table", True, f"equals {what} within {diff:.2g} (made on CUDA, checked on the CPU: 1 ulp)")
    return Check("table", False, f"differs from {what} by up to {diff:.3g}")


# ---------------------------------------------------------------- 4. configs


@dataclass
class _Expected:
    """What the output's files are compared with: the source (its files, config, weights and patch
    size) and how the output was made."""

    source: Source
    config: dict[str, Any]
    ckpt: Checkpoint
    patch: int
    made: _Made


class _Missing:
    """A key one side of a comparison lacks."""

    def __repr__(self) -> str:
        return "(none)"


MISSING: Any = _Missing()
Path_ = tuple[str, ...]  # a key path in a JSON object: ("vision_config", "image_size")


@check("configs")
def _check_configs(subject: Subject) -> Check:
    """Every file of the output but the weights, against the source's: the model config key by key
    (the keys xcr rewrote apart, each checked for what it must state), the processor files key by
    key (their sizes apart, each checked), every other file byte for byte; and config.json, the
    processor files and the weights' grid agree on the resolution; a dtype the config states is
    the one the weights are stored in."""
    folder, family, config, res = subject.folder, subject.family, subject.config, subject.res
    grid, prefix, problem, expected = subject.grid, subject.prefix, subject.config_problem, subject.expected
    problems = [problem] if problem else []
    named = {id(v): k for k, v in config.items() if isinstance(v, dict)}
    for block in family.vision_config_blocks(config):
        if block.get("image_size") != family.size_json(res):
            where = f"{named[id(block)]}." if id(block) in named else ""
            problems.append(
                f"{family.config_file} has {where}image_size {json.dumps(block.get('image_size'))}, not {json.dumps(family.size_json(res))}"
            )
    if problem is None and not family.vision_config_blocks(config):  # sizes stated elsewhere (timm)
        stated = vision_sizes(config, family)
        if stated.image_size != res or stated.missing:
            problems.append(f"config.json says {stated.image_size.px}" + (" (by default)" if stated.missing else ""))
    try:
        table = locate(open_checkpoint(folder, family.weight_files).shapes, family)
        rows = table.rows if table.pos else None
        if rows != prefix + grid[0] * grid[1]:
            problems.append(f"the weights' table has {rows} rows, not {prefix + grid[0] * grid[1]}")
    except InputError as e:
        problems.append(e.message)
    base = _expected_config(family, expected.config, expected.made, expected.ckpt.shapes)
    rewritten, found = _config_keys(family, config, base, res, expected)
    problems += found
    problems += _dtype_problems(family.config_file, config, _stored_dtypes(folder), base, expected)
    sizes, files, found = _processors(folder, family, res, expected.source.folder, expected.made.vision_only)
    problems += found
    carried, found = _carried(folder, family, expected.source, grid, expected.made.vision_only)
    problems += found
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return Check("configs", False, "; ".join(problems[:3]) + more)
    what = f"{family.config_file} is the source's" + (
        f" vision config lifted to the top level (model_type {base['model_type']}, architectures "
        f"{_shown(base['architectures'])})"
        if base is not expected.config
        else ""
    )
    keys = f", key for key, but for {_some(rewritten, 6)}, which xcr rewrote" if rewritten else ", key for key"
    sizes_of = "its sizes" if len(files) == 1 else "their sizes"
    return Check(
        "configs",
        True,
        f"{what}{keys}; "
        + (f"{_some(files, 2)} {'is' if len(files) == 1 else 'are'} the source's but for {sizes_of}; " if files else "")
        + (f"{carried} carried file(s) byte-identical to the source's; " if carried else "")
        + f"{family.config_file}"
        + (f", {sizes} processor input size(s)" if sizes else "")
        + f" and the weights' {grid_text(grid)} grid all say {res.px}",
    )


def _expected_config(
    family: Family, src: dict[str, Any], made: _Made, shapes: dict[str, tuple[int, ...]]
) -> dict[str, Any]:
    """The source's config as the output's starts from: as it is, or, for a vision-only output, the
    vision tower's config its adapter makes of it (the vision block at the top level, with the
    architecture the record names)."""
    if made.vision_only and family.has_text:
        return family.vision_only_config(src, made.with_projection, shapes)
    return src


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _config_keys(family: Family, config: dict[str, Any], base: dict[str, Any], res: Size,
                 expected: _Expected) -> tuple[list[str], list[str]]:  # fmt: skip
    """(the keys xcr rewrote, problems): every key of `config` equals `base`'s (the source's),
    but the size keys the family's adapter sets (each must state `res`, or for a key that scales
    with it, keep the source's relation) and, with a recorded --dtype, the dtype keys (the
    recorded dtype)."""
    what = family.config_file
    adapted = copy.deepcopy(base)
    try:
        family.set_size(adapted, res, expected.patch)
    except (InputError, TypeError, ValueError) as e:  # a source config the adapter cannot state a size in
        return [], [f"the source's {what} takes no size: {e}"]
    sizes = {path: value for path, _, value in _diff(base, adapted)}  # the keys the adapter sets: which, not what
    problems, rewritten = [], []
    for path, adapter_value in sizes.items():
        value = _get(config, path)
        problem = _size_key(path, value, base, res, expected.patch)
        if problem is _UNKNOWN:  # a size key verify has no rule for: the adapter's own value (said in the docs)
            problem = None if _same_json(value, adapter_value) else f"is {_shown(value)}, not {_shown(adapter_value)}"
        if problem:
            problems.append(f"{what} {_dotted(path)} {problem}")
        elif not _same_json(value, _get(base, path)):
            rewritten.append(_dotted(path))
    recast = expected.made.dtype != "keep" and family.library == "transformers"
    for path, want, got in _diff(base, config):
        if path in sizes:
            continue
        if recast and path[-1] in DTYPE_KEYS and len(path) <= 2 and got == expected.made.dtype:
            rewritten.append(_dotted(path))
        else:
            problems.append(_difference(what, path, want, got))
    return rewritten, problems


_UNKNOWN: Any = object()


def _size_key(path: Path_, value: Any, base: dict[str, Any], res: Size, patch: int) -> Any:
    """What is wrong with the value of the size key at `path` (None: nothing), checked by what the
    key means, not by xcr's rewrite: an image size states `res`; an input size [C, H, W] states it
    with the source's channels; a larger test size keeps its share of the input size; a patch size
    is the source's. _UNKNOWN for a key with no rule here."""
    key, old = path[-1], _get(base, path)
    if value is MISSING:
        return "is missing"
    if key in ("image_size", "img_size", "size"):
        return None if Size.from_json(value) == res else f"is {_shown(value)}, not {_shown(res.json())}"
    if key == "input_size":
        want = [old[0] if isinstance(old, list) and old else 3, *res.sides]
        return None if value == want else f"is {_shown(value)}, not {_shown(want)}"
    if key == "test_input_size":
        given = _get(base, (*path[:-1], "input_size"))
        if not (_ints(old, 3) and _ints(given, 3) and _ints(value, 3)):
            return f"is {_shown(value)}; the source's is {_shown(old)} for an input size {_shown(given)}"
        want = [old[0], *(old[i] * res.sides[i - 1] / given[i] for i in (1, 2))]
        if value[0] == old[0] and all(abs(value[i] - want[i]) <= 1 for i in (1, 2)):
            return None
        return (f"is {_shown(value)}; the source's {_shown(old)} for its {_shown(given)} input makes "
                f"{[old[0], *(round(w) for w in want[1:])]} at {res.px}")  # fmt: skip
    if key == "patch_size":
        return None if value == patch else f"is {_shown(value)}, not the source's {patch}"
    if key == "timm_model_name":  # open_clip 3.3.0 builds a timm trunk at the size its architecture's name states
        _arch, stem, size = timm_arch(str(value))
        named = f"{timm_arch(str(old))[1]}_{res.height}"
        return (
            None
            if f"{stem}_{size}" == named
            else f"is {_shown(value)}, not {_shown(named)} (timm's network at {res.px})"
        )
    return _UNKNOWN


def _ints(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n and all(type(v) is int and v > 0 for v in value)


def _dtype_problems(what: str, config: dict[str, Any], stored: set[str], base: dict[str, Any],
                    expected: _Expected) -> list[str]:  # fmt: skip
    """A dtype the config states (top level or a sub-config) that the weights are not stored in:
    transformers loads them in that dtype. Unless the source's config says the same of its own
    weights (then the output is as the source is)."""
    src_stored = {t.dtype for t in (t for s in expected.ckpt.shards for t in s.tensors) if _is_parameter(t.dtype)}
    problems = []
    for path, value in _dtype_statements(config):
        if not stored or not isinstance(value, str) or WORD_DTYPES.get(value) in stored | {None}:
            continue
        if _get(base, path) == value and WORD_DTYPES[value] not in src_stored:
            continue  # the source's config contradicts its weights the same way
        words = ", ".join(sorted(DTYPE_WORDS.get(d, d) for d in stored))
        problems.append(f"{what} says {_dotted(path)} {value}, but the weights are stored in {words} "
                        f"(transformers would load them as {value})")  # fmt: skip
    return problems


def _dtype_statements(config: dict[str, Any]) -> list[tuple[Path_, Any]]:
    """Every dtype key of the top level and of the sub-configs, with its value."""
    found: list[tuple[Path_, Any]] = [((key,), config[key]) for key in DTYPE_KEYS if key in config]
    for name, block in config.items():
        if isinstance(block, dict):
            found += [((name, key), block[key]) for key in DTYPE_KEYS if key in block]
    return found


def _processors(folder: Path, family: Family, res: Size, source: Path,
                alone: bool = False) -> tuple[int, list[str], list[str]]:  # fmt: skip
    """(input sizes checked, processor files compared, problems): every processor file of the
    source is in the output (transformers families: timm and open_clip state their own sizes and
    xcr carries none) and equals it key by key but for its sizes, which state `res` in the
    source's form; a resize before a crop keeps the source's ratio to its crop."""
    problems: list[str] = []
    try:
        ours = {rel: path for path, rel in walk(folder) if path.name in PROCESSOR_FILES}
        theirs = {rel: path for path, rel in walk(source) if path.name in PROCESSOR_FILES and path.is_file()}
    except InputError as e:
        return 0, [], [e.message]
    if family.library != "transformers":
        theirs = {}
    try:
        expected = {rel: read_json(path) for rel, path in theirs.items()}
    except InputError as e:
        return 0, [], [e.message]
    if alone:  # a vision-only output: the processor files its family makes of the source's (a VLM's tower)
        expected = family.vision_only_processors(expected)
        theirs = dict.fromkeys(expected, source)
    problems += [f"{rel} is missing (the source has it)" for rel in sorted(theirs.keys() - ours.keys())]
    problems += [
        f"{rel} is not in the source" + (f" ({family.name} outputs carry no processor file)" if not theirs else "")
        for rel in sorted(ours.keys() - theirs.keys())
    ]
    sizes = 0
    for rel in sorted(ours.keys() & theirs.keys()):
        try:
            data, src = read_json(ours[rel]), expected[rel]
        except InputError as e:
            problems.append(e.message)
            continue
        n, found = _processor(rel, data, src, res, family.token_keys() if isinstance(family, VlmFamily) else ())
        sizes += n
        problems += found
    return sizes, sorted(ours.keys() & theirs.keys()), problems


def _size_blocks(data: dict[str, Any]) -> list[tuple[Path_, dict[str, Any]]]:
    """The blocks of a processor file that may state sizes: the top level, and the blocks under a
    `…processor` key (processor_config.json's `image_processor`)."""
    return [((), data)] + [((k,), v) for k, v in data.items() if k.endswith("processor") and isinstance(v, dict)]


def _processor(rel: str, data: dict[str, Any], src: dict[str, Any], res: Size,
               tokens: tuple[str, ...] = ()) -> tuple[int, list[str]]:  # fmt: skip
    """One processor file against the source's: (input sizes checked, problems). `tokens`: keys a
    VLM's token counts set (the tokens check judges them)."""
    size_paths = {(*where, key) for where, _ in _size_blocks(src) + _size_blocks(data) for key in SIZE_KEYS + tokens}
    problems = []
    for path, want, got in _diff(src, data):
        if any(path[: len(p)] == p for p in size_paths):
            continue
        problems.append(_difference(rel, path, want, got))
    sizes = 0
    for where, theirs in _size_blocks(src):
        ours = _get(data, where)
        if not isinstance(ours, dict):
            continue  # the block is missing: said above
        crops = theirs.get("crop_size") is not None and theirs.get("do_center_crop", True) is not False
        for key in SIZE_KEYS:
            s, o = theirs.get(key, MISSING), ours.get(key, MISSING)
            said = f"{rel} has {_dotted((*where, key))} {_shown(o)}"
            if s in (None, MISSING) and o in (None, MISSING):
                continue
            if _form(s) != _form(o):
                problems.append(f"{said}, not in the source's form {_shown(s)}")
                continue
            sizes += 1
            crop = _hw(theirs.get("crop_size"))
            if key == "size" and crops and crop is not None:
                problems += _resize_before_crop(said, o, s, crop, res)
            elif any(type(v) is not int or v != side for v, side in _sides(o, res)):
                problems.append(f"{said}, not {res.px}")
    return sizes, problems


def _resize_before_crop(said: str, value: Any, src: Any, crop: tuple[int, int], res: Size) -> list[str]:
    """A resize before a crop of `res`: each number keeps the source's ratio to its crop `crop`
    (facebook/dinov2-*: 256 for a 224 crop, so 512 for 448), within a pixel of rounding."""
    for (k, v), (_, v0) in zip(_numbers(value), _numbers(src), strict=True):
        side = 1 if k in ("width", 1) else 0
        want = v0 * res.sides[side] / crop[side] if type(v0) is int else None
        if type(v) is int and want is not None and abs(v - want) <= 1:
            continue
        small = f", smaller than its {res.px} crop" if type(v) is int and v < res.sides[side] else ""
        keeps = (
            f"; the source resizes to {_shown(src)} for a {crop[0]}×{crop[1]} crop, which is {round(want)} at {res.px}"
            if want
            else ""
        )
        return [f"{said}{small}{keeps}"]
    return []


def _numbers(value: Any) -> list[tuple[Any, Any]]:
    """The numbers of a size with what each stands for: a dict's keys, a list's places, 0 for an int."""
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list):
        return list(enumerate(value))
    return [(0, value)]


def _hw(value: Any) -> tuple[int, int] | None:
    """A crop size as (height, width), or None when it is not one."""
    if type(value) is int:
        return value, value
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
        return value[0], value[1]
    if isinstance(value, dict):
        if type(value.get("height")) is int and type(value.get("width")) is int:
            return value["height"], value["width"]
        edge = value.get("shortest_edge")
        if type(edge) is int:
            return edge, edge
    return None


def _form(value: Any) -> Any:
    """The form of a size: int, [h, w], or a dict of these keys."""
    if isinstance(value, dict):
        return ("dict", tuple(sorted(value)))
    if isinstance(value, list):
        return ("list", len(value))
    return type(value).__name__


def _sides(value: Any, res: Size) -> list[tuple[Any, int]]:
    """Each number of a processor size paired with the side of `res` it should state."""
    if isinstance(value, dict):
        return [(v, res.width if k == "width" else res.height) for k, v in value.items()]
    if isinstance(value, list):
        return [(v, res.sides[i] if i < 2 else res.height) for i, v in enumerate(value)]
    return [(value, res.height)]


def _code_problems(rel: str, ours: str, theirs: str, grid: Grid) -> list[str]:
    """A model code file whose literal states the grid side (XComposer2's `new_size = N`): the source's
    lines but that one, which says the output's side."""
    a, b = theirs.splitlines(), ours.splitlines()
    changed = [(x, y) for x, y in zip(a, b, strict=False) if x != y]
    if len(a) != len(b) or len(changed) > 1:
        return [f"{rel} differs from the source's in more than its new_size line"]
    wanted = f"new_size = {grid[0]}"
    line = changed[0][1].strip() if changed else next((x.strip() for x in b if x.strip().startswith("new_size =")), "")
    return [] if line == wanted else [f"{rel} has `{line}`, not `{wanted}`"]


def _carried(
    folder: Path, family: Family, source: Source, grid: Grid, made_alone: bool = False
) -> tuple[int, list[str]]:
    """(files compared, problems): every file xcr carries from the source (tokenizer, vocabulary,
    licence, subfolder files: all but the weights, configs, processor files, model card and hidden
    files; of a Hub snapshot, the files xcr downloads) is in the output with the source's bytes,
    and the output holds no other file (weights of another format among them)."""
    problems: list[str] = []
    try:
        theirs = {rel: path for path, rel in walk(source.folder) if _carries(path, rel)}
        if made_alone:
            theirs = {rel: path for rel, path in theirs.items() if not family.vision_only_drops(rel)}
        ours = list(walk(folder))
    except InputError as e:
        return 0, [e.message]
    if source.repo_id:  # a Hub snapshot: xcr downloads its metadata files, and others may be in the cache
        theirs = {rel: path for rel, path in theirs.items() if is_metadata(rel)}
    seen, same = set(), 0
    for path, rel in ours:
        name = path.name
        if rel in (family.config_file, CARD, SAFETENSORS_INDEX) or name in PROCESSOR_FILES:
            continue  # compared above, or by the files check
        if name.endswith(".safetensors") or (name.startswith(".") and name != ".gitattributes"):
            continue  # the files check; hidden files no loader reads
        seen.add(rel)
        what = not_a_file(path)
        if what:
            problems.append(f"{rel} is {what}")
        elif is_weight_file(name) or rel in CONFIG_FILES:
            problems.append(f"{rel} is not xcr's: xcr writes safetensors weights and one config, and a loader may "
                            "read this instead")  # fmt: skip
        elif not (source.folder / rel).is_file():
            problems.append(f"{rel} is not in the source")
        elif rel in family.code_files:
            problems += _code_problems(rel, path.read_text(), (source.folder / rel).read_text(), grid)
        elif not filecmp.cmp(path, source.folder / rel, shallow=False):
            problems.append(f"{rel} differs from the source's")
        else:
            same += 1
    problems += [f"{rel} is missing (the source has it)" for rel in sorted(theirs.keys() - seen)]
    return same, problems


def _carries(path: Path, rel: str) -> bool:
    """Whether xcr carries this file of a source folder over to an output unchanged."""
    name = path.name
    if rel in CONFIG_FILES or rel == CARD or name in PROCESSOR_FILES or is_weight_file(name):
        return False
    return not (name.startswith(".") and name != ".gitattributes") and not_a_file(path) is None and path.is_file()


def _diff(a: Any, b: Any, path: Path_ = ()) -> list[tuple[Path_, Any, Any]]:
    """Where the JSON values `a` (expected) and `b` differ: (key path, a's value, b's), MISSING for
    a key one side lacks; objects are compared key by key, down to their leaves (an object one side
    lacks, by its keys), anything else as JSON (1, 1.0 and true differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [*a, *(k for k in b if k not in a)]
        return [d for k in keys for d in _diff(a.get(k, MISSING), b.get(k, MISSING), (*path, str(k)))]
    if a is MISSING and isinstance(b, dict) and b:
        return _diff({}, b, path)
    if b is MISSING and isinstance(a, dict) and a:
        return _diff(a, {}, path)
    return [] if _same_json(a, b) else [(path, a, b)]


def _same_json(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _get(data: Any, path: Path_) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return MISSING
        data = data[key]
    return data


def _dotted(path: Path_) -> str:
    return ".".join(path) or "(the whole file)"


def _difference(what: str, path: Path_, want: Any, got: Any) -> str:
    """One difference between a file and the source's, in words."""
    if got is MISSING:
        return f"{what} lacks {_dotted(path)} (the source's is {_shown(want)})"
    if want is MISSING:
        return f"{what} has {_dotted(path)} {_shown(got)}, which the source's has not"
    return f"{what} has {_dotted(path)} {_shown(got)}, the source's {_shown(want)}"


def _shown(value: Any) -> str:
    text = repr(value) if value is MISSING else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:79] + "…"


# ---------------------------------------------------------------- 5. image tokens (a VLM)


@check("tokens")
def _check_tokens(subject: Subject) -> Check | None:
    """A VLM: every image-token count its config and processor files state is the count the output's
    grid gives, and the anyres resolutions (LLaVA-NeXT), in config.json and in each processor file, are
    the source's scaled from its tile to the new one (so the model and the processor cut the same tiles)."""
    family, config, grid, res = subject.family, subject.config, subject.grid, subject.res
    if not isinstance(family, VlmFamily) or family.vision_only_form(config)[0]:
        return None
    want = family.tokens(config, grid)
    stated: list[tuple[str, Any]] = []
    for where, block in [("", config)] + [(f"{k}.", v) for k, v in config.items() if isinstance(v, dict)]:
        stated += [
            (f"{family.config_file}: {where}{k}", block[k])
            for k in ("image_seq_length", "num_image_tokens")
            if k in block
        ]
    source = subject.expected.config
    old = vision_sizes(source, family).image_size.height  # the source's tile
    pinpoints = [(family.config_file, config.get("image_grid_pinpoints"), source.get("image_grid_pinpoints"))]
    for path, rel in walk(subject.folder):
        if path.name in PROCESSOR_FILES:
            theirs = subject.expected.source.folder / rel
            src_blocks = dict(_size_blocks(read_json(theirs))) if theirs.is_file() else {}
            for inner, block in _size_blocks(read_json(path)):
                at = f"{rel}: {_dotted(inner) + '.' if inner else ''}"
                stated += [(f"{at}image_seq_length", block["image_seq_length"])] if "image_seq_length" in block else []
                was = src_blocks.get(inner, {}).get("image_grid_pinpoints")
                if was is None and "image_grid_pinpoints" in block:  # the class default, stated: the model's
                    was = source.get("image_grid_pinpoints")
                pinpoints.append((rel, block.get("image_grid_pinpoints"), was))
    pinpoints = [p for p in pinpoints if p[1] is not None or p[2] is not None]
    problems = [f"{where} is {value!r}, not {want}" for where, value in stated if value != want]
    for where, points, was in pinpoints:  # the model's tiles and the processor's must both follow the tile
        scaled = [[v * res.sides[i] // old for i, v in enumerate(p)] for p in was] if isinstance(was, list) else was
        if points != scaled:
            problems.append(f"{where}: image_grid_pinpoints {json.dumps(points)}, not the source's scaled to "
                            f"{res.px} tiles {json.dumps(scaled)}")  # fmt: skip
    if not stated and not pinpoints:
        return Check("tokens", True, f"{grid_text(grid)} grid: {want} image tokens per image; no file states a count "
                     "(the model counts them from the grid)")  # fmt: skip
    said = f"{len(stated)} statement(s) of the image-token count" + (
        f" and {len(pinpoints)} anyres list(s)" if pinpoints else ""
    )
    if problems:
        return Check("tokens", False, "; ".join(problems))
    return Check("tokens", True, f"{grid_text(grid)} grid: {want} image tokens per image (per tile); {said} agree")


# ---------------------------------------------------------------- 6. load and forward


@check("load")
def _check_load(subject: Subject) -> Check:
    """Load the output with transformers, make N×N pixels with its processor, and compare its
    forward pass at N×N with the source's with interpolate_pos_encoding=True. Both load in float32
    (whatever dtype their configs state, which the configs check holds to the weights); `stored`,
    the dtypes the output's files store, says whether the comparison must be exact."""
    folder, config, family, res, made = subject.folder, subject.config, subject.family, subject.res, subject.made
    source, source_grid, stored = subject.expected.source.folder, subject.src_grid, _stored_dtypes(folder)
    if family.oracle(config) is None:
        return Check("load", None, f"skipped: no transformers class loads {family.name} checkpoints ({family.name} "
                     "loads it, which xcr does not use); the table and configs checks cover what xcr wrote")  # fmt: skip
    try:
        import PIL  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return Check("load", None, f"skipped: it needs transformers and pillow ({VERIFY_EXTRA})")

    vlm = family if isinstance(family, VlmFamily) else None  # a VLM's tower is loaded alone, never its LLM
    tower = vlm if vlm and not vlm.vision_only_form(config)[0] else None
    cls = _model_class(config, family)
    what = f"{tower.vision_architectures[0]} (its vision tower alone)" if tower else cls.__name__
    model, info, failure = _load_tower(folder, tower) if tower else _load(cls, folder)
    if model is None:
        return Check("load", False, f"{what if tower else cls.__name__ + '.from_pretrained'} fails: {failure}")
    reference, source_info, failure = _load_tower(source, vlm) if vlm else _load(cls, source)
    if reference is None:
        return Check("load", False, f"the source does not load as {what}: {failure}")
    # keys the source itself lacks or has to spare (a ViTModel saved without its pooler) are not the output's doing
    problems = {k: sorted(set(v) - set(source_info.get(k) or ())) for k, v in info.items() if k != "error_msgs"}
    if any(problems.values()):
        return Check("load", False, f"{what} loads it with {_key_report(problems)}")
    processors = any((folder / name).is_file() for name in PROCESSOR_FILES)
    pixels_note = _processor_pixels(folder, res) if processors else None
    if pixels_note:
        return Check("load", False, pixels_note)
    head = f"{what} loads with no missing, unexpected or mismatched keys" + (
        f"; the processor makes {res.height}×{res.width} pixels" if processors else " (it has no image processor)"
    )
    if (made.mode, made.antialias) != (family.mode, family.antialias):
        method = made.mode + (", antialias" if made.antialias else "")
        return Check("load", True, f"{head}; the forward pass is not compared: the table was made with {method}, "
                     f"not the {family.name} runtime's own method, which the source runs (the table check proves it)")  # fmt: skip
    if source_grid[0] != source_grid[1]:
        return Check("load", True, f"{head}; the forward pass is not compared: transformers reads a table it "
                     f"resamples as a square grid, and the source's is {grid_text(source_grid)} (the table check "
                     "proves the table)")  # fmt: skip
    return _forward(_fresh(model.float()), _fresh(reference.float()), head, res, stored)


def _forward(model: Any, reference: Any, head: str, res: Size, stored: set[str]) -> Check:
    """Compare the output's forward pass at `res` with the source's with interpolate_pos_encoding=True:
    exactly for float32 weights, by cosine for reduced precision."""
    import torch

    pixels = torch.randn(2, 3, *res.sides, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        try:
            got = _features(model, pixels)
        except Exception as e:
            return Check(
                "load", False, f"{head}, but its forward pass at {res.height}×{res.width} fails: {_first_line(e)}"
            )
        try:
            want = _features(reference, pixels, interpolate=True)
        except Exception as e:
            return Check("load", True, f"{head}; the forward pass is not compared: the source's forward at "
                         f"{res.height}×{res.width} fails in transformers ({_first_line(e)})")  # fmt: skip
    if got.shape != want.shape:
        return Check("load", False, f"{head}, but its forward pass gives {list(got.shape)}, the source's "
                     f"{list(want.shape)}")  # fmt: skip
    diff = (got - want).abs().max().item()
    cosine = _cosine(torch.nn.functional.cosine_similarity(got.flatten(1), want.flatten(1)).min().item())
    figures = f"max |difference| {diff:.3g}, cosine similarity {cosine:.6f}"
    reduced = sorted(stored - {"F32", "F64"}, key=lambda d: TOLERANCE.get(d, 0.99))  # the least precise first
    if not reduced:  # float32 weights: what transformers computes, exactly
        if torch.equal(got, want):
            return Check(
                "load", True, f"{head}; the forward pass at {res.height}×{res.width} equals the source's, bit for bit"
            )
        return Check("load", False, f"{head}, but its forward pass differs from the source's ({figures})")
    need = TOLERANCE.get(reduced[0], 0.99)
    words = " and ".join(DTYPE_WORDS.get(d, d) for d in reduced)
    why = f"its weights are stored in {words}; compared in float32, cosine ≥ {need} is required"
    return Check("load", cosine >= need, f"{head}; forward pass: {figures} ({why})")


def _cosine(value: float) -> float:
    """A cosine similarity as computed in floating point (1.0000001) brought back into [-1, 1]."""
    return min(1.0, max(-1.0, value))


def _load_tower(folder: Path, family: VlmFamily) -> tuple[Any, dict[str, Any], str]:
    """A VLM's vision tower alone, in float32, as its bare family's transformers class, from the
    folder's config and the tower's tensors (the language model is never read); as `_load`."""
    import transformers

    try:
        config = read_json(folder / family.config_file)
        ckpt = open_checkpoint(folder, family.weight_files)
        fields = family.vision_only_config(config, False, ckpt.shapes)
        model = getattr(transformers, family.vision_architectures[0])(transformers.AutoConfig.for_model(**fields))
        own = set(model.state_dict())
        state = {}
        for shard in ckpt.shards:
            for t in shard.tensors:
                if family.is_vision_tensor(t.name, False):
                    name = family.vision_only_name(t.name)
                    bare = name.removeprefix("vision_model.")
                    state[bare if name not in own and bare in own else name] = load_tensor(t).float()
        result = model.load_state_dict(state, strict=False)
    except Exception as e:
        return None, {}, _first_line(e)
    return model.float(), {"missing_keys": result.missing_keys, "unexpected_keys": result.unexpected_keys}, ""


def _load(cls: Any, folder: Path) -> tuple[Any, dict[str, Any], str]:
    """(model, loading info, "") in float32, or (None, {}, why not). A load that transformers refuses
    for mismatched shapes is retried, allowing them, to say which keys (transformers itself only
    points at a report it logged)."""
    import torch
    import transformers

    version = tuple(int(p) if p.isdigit() else 0 for p in transformers.__version__.split(".")[:2])
    dtype = {"dtype" if version >= (4, 56) else "torch_dtype": torch.float32}
    try:
        model, info = cls.from_pretrained(folder, output_loading_info=True, **dtype)
        return model, info, ""
    except Exception as e:
        failure = _first_line(e)
    try:
        _, info = cls.from_pretrained(folder, output_loading_info=True, ignore_mismatched_sizes=True, **dtype)
    except Exception:
        return None, {}, failure
    report = {k: v for k, v in info.items() if k != "error_msgs"}
    return None, {}, _key_report(report) if any(report.values()) else failure


def _key_report(info: dict[str, Any]) -> str:
    """transformers' loading info in a few words: each kind of key with its count and first three;
    a mismatched key with the checkpoint's shape and the model's."""
    parts = []
    for kind, keys in info.items():
        keys = sorted(keys, key=str)
        if not keys:
            continue
        shown = [
            f"{k[0]} (checkpoint {list(k[1])}, model {list(k[2])})" if isinstance(k, tuple) and len(k) == 3 else str(k)
            for k in keys[:3]
        ]
        more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        parts.append(f"{len(keys)} {kind.replace('_keys', '').replace('_', ' ')} key(s): {', '.join(shown)}{more}")
    return "; ".join(parts)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No progress bars or warnings from transformers while it loads: the checks report what matters."""
    try:
        from transformers.utils import logging
    except ImportError:
        yield
        return
    bars, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _model_class(config: dict[str, Any], family: Family) -> Any:
    """The transformers class that loads the checkpoint (its adapter's oracle)."""
    import transformers

    return getattr(transformers, str(family.oracle(config)))


def _fresh(model: Any) -> Any:
    """The model in fresh, aligned memory (BLAS takes other paths for memory-mapped, unaligned
    weights, which changes last bits) and in eval mode."""
    import torch

    with torch.no_grad():
        for p in list(model.parameters()) + list(model.buffers()):
            p.data = p.data.clone()
    return model.eval()


def _features(model: Any, pixels: Any, interpolate: bool = False) -> Any:
    """Image embeddings: projected (CLIPModel, SiglipModel, …WithProjection), else the last hidden
    states (or a classifier's logits). `interpolate`: at a size other than the model's own, with
    the family's run-time interpolation (a model that always interpolates, DINOv2, takes no flag)."""
    kw = {"interpolate_pos_encoding": True} if interpolate and _takes_flag(model) else {}
    if hasattr(model, "get_image_features"):
        out = model.get_image_features(pixel_values=pixels, **kw)
        return out if not hasattr(out, "pooler_output") else out.pooler_output
    got = model(pixel_values=pixels, **kw)
    for key in ("image_embeds", "last_hidden_state", "logits"):
        if getattr(got, key, None) is not None:
            return getattr(got, key)
    raise XcrError(f"{type(model).__name__} returns no image features to compare")


def _takes_flag(model: Any) -> bool:
    import inspect

    method = model.get_image_features if hasattr(model, "get_image_features") else model.forward
    return "interpolate_pos_encoding" in inspect.signature(method).parameters


def _embedding(model: Any, pixels: Any) -> Any:
    """One vector per image: projected where the model projects, else the pooled output."""
    if hasattr(model, "get_image_features"):
        out = model.get_image_features(pixel_values=pixels)
        return out if not hasattr(out, "pooler_output") else out.pooler_output
    got = model(pixel_values=pixels)
    for key in ("image_embeds", "pooler_output", "logits"):
        if getattr(got, key, None) is not None:
            return getattr(got, key)
    return got.last_hidden_state[:, 0]


def _processor_pixels(folder: Path, res: Size) -> str | None:
    """None when the folder's image processor makes `res` pixels; else what it makes."""
    from PIL import Image
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(folder)  # type: ignore[no-untyped-call]
    except Exception as e:
        return f"its image processor does not load: {_first_line(e)}"
    shape = tuple(
        processor(images=Image.new("RGB", (640, 480), (90, 120, 200)), return_tensors="pt")["pixel_values"].shape
    )
    return (
        None
        if shape[-2:] == res.sides
        else f"its image processor makes {shape[-2]}×{shape[-1]} pixels, not {res.height}×{res.width}"
    )


def _first_line(e: BaseException) -> str:
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 400 else text[:400] + "…"


# ---------------------------------------------------------------- drift


def _drift(folder: Path, source: Path, config: dict[str, Any], family: Family, images: Path) -> Drift:
    """Cosine similarity of each image's embedding by the source (at its resolution, through its
    processor) and by the output (at the new one, through its processor)."""
    try:
        from PIL import Image
        from transformers import AutoImageProcessor
    except ImportError as e:
        raise XcrError(f"--images needs transformers and pillow: {VERIFY_EXTRA}") from e
    import torch

    if family.oracle(config) is None:
        raise UsageError(f"--images needs a checkpoint transformers loads; {family.name} checkpoints are not")
    if not images.exists():
        raise UsageError(f"{arg('images', images)} does not exist; give a folder of images")
    if not images.is_dir():
        raise UsageError(f"{arg('images', images)} is not a folder of images; give the folder that holds it")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UsageError(f"{images} holds no images ({', '.join(IMAGE_SUFFIXES)}); give a folder that does")
    cls = _model_class(config, family)
    pairs = []
    for root in (source, folder):
        if not any((root / name).is_file() for name in PROCESSOR_FILES):
            raise InputError(
                f"--images runs each checkpoint's own image processor, and {root} has none "
                f"({' or '.join(PROCESSOR_FILES)}); leave --images out"
            )
        pairs.append((AutoImageProcessor.from_pretrained(root), _fresh(cls.from_pretrained(root).float())))  # type: ignore[no-untyped-call]
    scores = []
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(path).convert("RGB")
        except Image.DecompressionBombError as e:
            raise InputError(
                f"{path} is larger than PIL's safety limit ({_first_line(e)}); shrink it or move it out"
            ) from e
        except Exception as e:
            raise InputError(f"{path} is not an image PIL can read ({_first_line(e)}); fix it or move it out") from e
        with torch.no_grad():
            a, b = (_embedding(m, p(images=image, return_tensors="pt")["pixel_values"]) for p, m in pairs)
        scores.append(
            (_cosine(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()), path.name)
        )
    values = [s for s, _ in scores]
    worst = [{"file": n, "cosine": round(s, 6)} for s, n in sorted(scores)[:3]]
    return Drift(len(values), sum(values) / len(values), min(values), worst)
