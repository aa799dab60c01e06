"""`xcr verify`: proof that an output is what its record says, before days of fine-tuning.

Five checks, each reported by name with pass/fail and its figure:

1. files: every weight file parses with the `safetensors` library (the reference implementation)
   and with xcr's own reader, and the index covers every tensor;
2. tensors: every tensor but the position table and ids is byte-identical to the source's (or
   equal to it after the recorded cast); the position ids are arange;
3. table: the position table equals a fresh resample of the source's, with the recorded method;
4. configs: config.json, the processor files and the weights agree on the resolution;
5. load: (transformers) the output loads with no missing, unexpected or mismatched keys, its image
   processor makes N×N pixels, and its forward pass at N×N equals the source's with
   `interpolate_pos_encoding=True`.

The byte-level checks stream (32 MiB at a time: memory stays flat); only the forward pass holds
the models. `images=` adds the drift: how far the resize alone moves each image's embedding.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import record
from .configs import PROCESSOR_FILES, SIZE_KEYS, VisionSizes, vision_sizes
from .errors import InputError, UsageError, XcrError, arg
from .families import Family
from .safetensors_io import DTYPE_SIZES, FLOAT_DTYPES, FileRange, read_bytes, read_header, tensor_bytes, torch_dtype
from .size import Grid, Size, grid_text
from .sources import CONFIG_FILES, Checkpoint, SourceTensor, load_tensor, model_config, open_checkpoint, read_json, walk

if TYPE_CHECKING:
    from .hub import Source

CHUNK = 32 << 20
DTYPE_WORDS = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
WORD_DTYPES = {v: k for k, v in DTYPE_WORDS.items()}
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
    _name, config, adapter = record.folder_config(folder, family)
    source = _source(folder, rec, against, revision, token, quiet, adapter.weight_files)
    if source.folder.resolve() == folder.resolve():
        raise UsageError(f"{folder} is checked against itself; give {arg('against')} the checkpoint it was made from")
    src_sizes = vision_sizes(_source_config(source, folder, adapter), adapter)
    res, grid, config_problem = _meant(folder, config, adapter, rec, src_sizes.patch_size)
    made = _made(rec, adapter)
    checks: list[Check] = []
    files = _check_files(folder)
    checks.append(files)
    src_ckpt = open_checkpoint(source.folder, adapter.weight_files)
    prefix = _prefix(adapter, src_ckpt, src_sizes.grid)
    if files.ok:
        out_ckpt = open_checkpoint(folder)
        checks.append(_check_tensors(adapter, src_ckpt, out_ckpt, made))
        checks.append(_check_table(adapter, src_ckpt, out_ckpt, src_sizes.grid, grid, prefix, made))
    else:
        checks += [Check(name, None, "not run: the files did not parse") for name in ("tensors", "table")]
    checks.append(_check_configs(folder, adapter, config, res, grid, prefix, config_problem, source.folder))
    with _quiet_transformers():
        checks.append(_check_load(folder, source.folder, config, adapter, res, made, src_sizes.grid))
        drift = _drift(folder, source.folder, config, adapter, Path(images)) if images is not None else None
    return Verification(str(folder), source.display, source.revision, res, checks, drift)


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
    name = family.find(src.names, family.pos_suffix)
    if name is None:
        return family.num_prefix_tokens
    from .plan import token_shapes

    return family.prefix_rows(src.tensor(name).shape[-2], grid[0] * grid[1], token_shapes(src))


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
    from .hub import resolve_source

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


def _made(rec: dict[str, Any] | None, family: Family) -> _Made:
    if rec is None:  # not an xcr output (or an older one): the family's defaults, said in the details
        return _Made(family.mode, family.antialias, "keep", "cpu", recorded=False)
    return _Made(str(rec.get("mode", "bicubic")), bool(rec.get("antialias")), str(rec.get("dtype", "keep")),
                 str(rec.get("device", "cpu")), recorded=True)  # fmt: skip


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
    for name in names:
        try:
            ours = {t.name for t in read_header(folder / name).tensors}
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
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return Check("files", False, f"{index.name} is not a valid index ({type(e).__name__})")
        if weight_map != held:
            lost = sorted({str(v) for v in weight_map.values()} - set(names))
            if lost:
                return Check("files", False, f"{', '.join(lost[:3])} is missing (named in {index.name})")
            wrong = sorted(set(weight_map.items()) ^ set(held.items()))[:2]
            shown = ", ".join(f"{t} in {f}" for t, f in wrong)
            return Check("files", False, f"{index.name} does not map the tensors the files hold (e.g. {shown})")
    elif len(names) > 1:
        return Check("files", False, f"{len(names)} weight files but no model.safetensors.index.json")
    reader = "the safetensors library and xcr's reader" if safe_open is not None else "xcr's reader"
    return Check("files", True, f"{len(names)} file(s), {len(held)} tensors: valid for {reader}"
                 + (", the index covers every tensor" if index.is_file() else ""))  # fmt: skip


# ---------------------------------------------------------------- 2. tensors


def _check_tensors(family: Family, src: Checkpoint, out: Checkpoint, made: _Made) -> Check:
    """Every tensor but the table and ids: the source's bytes (or the source's values cast as
    recorded), compared in chunks. The ids: arange."""
    import torch

    pos_name, ids_name = family.find(out.names, family.pos_suffix), family.find(out.names, family.ids_suffix)
    source = {t.name: t for s in src.shards for t in s.tensors}
    compared = differ = 0
    nbytes = 0
    bad: list[str] = []
    for shard in out.shards:
        for t in shard.tensors:
            if t.name == pos_name:
                continue
            if t.name == ids_name:
                ids = load_tensor(t)
                if not torch.equal(ids.reshape(-1), torch.arange(ids.numel(), dtype=ids.dtype)):
                    bad.append(f"{t.name} is not arange")
                continue
            s = source.get(t.name)
            if s is None:
                bad.append(f"{t.name} is not in the source")
                continue
            cast = t.dtype != s.dtype
            if s.shape != t.shape or (cast and (t.dtype not in FLOAT_DTYPES or s.dtype not in FLOAT_DTYPES)):
                bad.append(f"{t.name} is {t.dtype} {list(t.shape)}, the source's {s.dtype} {list(s.shape)}")
                continue
            recorded = made.dtype if made.dtype != "keep" else DTYPE_WORDS.get(s.dtype)
            if made.recorded and t.dtype in FLOAT_DTYPES and DTYPE_WORDS.get(t.dtype) != recorded:
                bad.append(f"{t.name} is {DTYPE_WORDS.get(t.dtype)}, but the record says dtype {made.dtype}")
                continue
            compared += 1
            nbytes += t.nbytes
            if not _same(s, t):
                differ += 1
                bad.append(f"{t.name} differs from the source" + (" after the cast" if cast else ""))
    if bad:
        return Check("tensors", False, f"{len(bad)} problem(s): {'; '.join(bad[:3])}")
    how = "equal to the source's values cast" if made.dtype != "keep" else "byte-identical to the source"
    arange = "; the position ids are arange" if ids_name else ""
    return Check("tensors", True, f"{compared} tensors ({nbytes / 2**20:,.1f} MiB) {how}{arange}")


def _chunks(t: SourceTensor, elems: int) -> Iterator[Any]:
    """`t`'s values, `elems` at a time, as flat tensors."""
    from .safetensors_io import tensor_from_bytes

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


def _check_table(family: Family, src: Checkpoint, out: Checkpoint, g0: Grid, g1: Grid, prefix: int,
                 made: _Made) -> Check:  # fmt: skip
    """The output's table (grid `g1`) against a fresh resample of the source's (grid `g0`), with the
    recorded method."""
    import torch

    from .interpolate import resample_grid

    src_name, out_name = family.find(src.names, family.pos_suffix), family.find(out.names, family.pos_suffix)
    if src_name is None or out_name is None:
        return Check("table", False, "no vision position table in the " + ("source" if src_name is None else "output"))
    old, new = src.tensor(src_name), out.tensor(out_name)
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


def _check_configs(folder: Path, family: Family, config: dict[str, Any], res: Size, grid: Grid, prefix: int,
                   problem: str | None = None, source: Path | None = None) -> Check:  # fmt: skip
    """config.json's vision blocks, the processor files' sizes and the weights' grid: one resolution;
    and every processor file of the source is there."""
    problems = [problem] if problem else []
    named = {id(v): k for k, v in config.items() if isinstance(v, dict)}
    for block in family.vision_config_blocks(config):
        if block.get("image_size") != res.json():
            where = f"{named[id(block)]}." if id(block) in named else ""
            problems.append(
                f"{family.config_file} has {where}image_size {json.dumps(block.get('image_size'))}, not {json.dumps(res.json())}"
            )
    if problem is None and not family.vision_config_blocks(config):  # sizes stated elsewhere (timm)
        stated = vision_sizes(config, family)
        if stated.image_size != res or stated.missing:
            problems.append(f"config.json says {stated.image_size.px}" + (" (by default)" if stated.missing else ""))
    try:
        ckpt = open_checkpoint(folder)
        name = family.find(ckpt.names, family.pos_suffix)
        rows = ckpt.tensor(name).shape[-2] if name else None
        if rows != prefix + grid[0] * grid[1]:
            problems.append(f"the weights' table has {rows} rows, not {prefix + grid[0] * grid[1]}")
    except InputError as e:
        problems.append(e.message)
    sizes = 0
    for path, rel in walk(folder):
        if path.name in PROCESSOR_FILES and path.is_file():
            data = read_json(path)
            blocks = [("", data)] + [
                (f"{k}.", v) for k, v in data.items() if k.endswith("processor") and isinstance(v, dict)
            ]
            for where, block in blocks:
                crops = block.get("crop_size") is not None and block.get("do_center_crop", True) is not False
                for key in SIZE_KEYS:
                    value = block.get(key)
                    if value is None:
                        continue
                    values = _sides(value, res)
                    if key == "size" and crops:  # resized, then cropped to what the model sees: at least that
                        if any(type(v) is not int or v < side for v, side in values):
                            problems.append(
                                f"{rel} has {where}size {json.dumps(value)}, smaller than its {res.px} crop"
                            )
                        continue
                    sizes += 1
                    if any(v != side for v, side in values):
                        problems.append(f"{rel} has {where}{key} {json.dumps(value)}, not {res.px}")
    if source is not None and family.library == "transformers":  # timm and open_clip: not their files
        theirs = {rel for path, rel in walk(source) if path.name in PROCESSOR_FILES}
        ours = {rel for path, rel in walk(folder) if path.name in PROCESSOR_FILES}
        problems += [f"{rel} is missing (the source has it)" for rel in sorted(theirs - ours)]
    if problems:
        return Check("configs", False, "; ".join(problems[:3]))
    return Check(
        "configs",
        True,
        f"{family.config_file}"
        + (f", {sizes} processor input size(s)" if sizes else "")
        + f" and the weights' {grid_text(grid)} grid all say {res.px}",
    )


def _sides(value: Any, res: Size) -> list[tuple[Any, int]]:
    """Each number of a processor size paired with the side of `res` it should state."""
    if isinstance(value, dict):
        return [(v, res.width if k == "width" else res.height) for k, v in value.items()]
    if isinstance(value, list):
        return [(v, res.sides[i] if i < 2 else res.height) for i, v in enumerate(value)]
    return [(value, res.height)]


# ---------------------------------------------------------------- 5. load and forward


def _check_load(folder: Path, source: Path, config: dict[str, Any], family: Family, res: Size, made: _Made,
                source_grid: Grid) -> Check:  # fmt: skip
    """Load the output with transformers, make N×N pixels with its processor, and compare its
    forward pass at N×N with the source's with interpolate_pos_encoding=True."""
    if not family.oracles:
        return Check("load", None, f"skipped: no transformers class loads {family.name} checkpoints ({family.name} "
                     "loads it, which xcr does not use); the table and configs checks cover what xcr wrote")  # fmt: skip
    try:
        import PIL  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return Check("load", None, f"skipped: it needs transformers and pillow ({VERIFY_EXTRA})")
    import torch

    cls = _model_class(config, family)
    try:
        model, info = cls.from_pretrained(folder, output_loading_info=True)
    except Exception as e:
        return Check("load", False, f"{cls.__name__}.from_pretrained fails: {_first_line(e)}")
    try:
        reference, source_info = cls.from_pretrained(source, output_loading_info=True)
    except Exception as e:
        return Check("load", False, f"the source does not load as {cls.__name__}: {_first_line(e)}")
    # keys the source itself lacks or has to spare (a ViTModel saved without its pooler) are not the output's doing
    problems = {k: sorted(set(v) - set(source_info.get(k) or ()))[:3] for k, v in info.items() if k != "error_msgs"}
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        return Check("load", False, f"{cls.__name__} loads with {problems}")
    processors = any((folder / name).is_file() for name in PROCESSOR_FILES)
    pixels_note = _processor_pixels(folder, res) if processors else None
    if pixels_note:
        return Check("load", False, pixels_note)
    head = f"{cls.__name__} loads with no missing, unexpected or mismatched keys" + (
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
    dtypes = {p.dtype for p in model.parameters()}
    exact = dtypes == {torch.float32}
    reference = _fresh(reference.float())
    model = _fresh(model.float())
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
    diff = (got - want).abs().max().item()
    cosine = torch.nn.functional.cosine_similarity(got.flatten(1), want.flatten(1)).min().item()
    figures = f"max |difference| {diff:.3g}, cosine similarity {cosine:.6f}"
    if exact:
        if torch.equal(got, want):
            return Check(
                "load", True, f"{head}; the forward pass at {res.height}×{res.width} equals the source's, bit for bit"
            )
        return Check("load", False, f"{head}, but its forward pass differs from the source's ({figures})")
    stored = next(WORD_DTYPES[str(d).removeprefix("torch.")] for d in dtypes if d != torch.float32)
    need = TOLERANCE.get(stored, 0.99)
    why = f"its weights are stored in {DTYPE_WORDS[stored]}; compared in float32, cosine ≥ {need} is required"
    ok = cosine >= need
    return Check("load", ok, f"{head}; forward pass: {figures} ({why})")


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
    """The transformers class that loads the checkpoint: its architecture, else the family's."""
    import transformers

    names = [a for a in config.get("architectures") or [] if hasattr(transformers, a)]
    if not names:
        vision_only = family.has_text and config.get("model_type") == family.vision_model_type
        names = [family.oracles[-1] if vision_only else family.oracles[0]]
    return getattr(transformers, names[0])


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

    if not family.oracles:
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
        scores.append((torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item(), path.name))
    values = [s for s, _ in scores]
    worst = [{"file": n, "cosine": round(s, 6)} for s, n in sorted(scores)[:3]]
    return Drift(len(values), sum(values) / len(values), min(values), worst)
