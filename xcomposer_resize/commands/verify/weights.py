"""The checks of the weights: 1. files (both readers parse them, the index is true), 2. tensors
(the source's, byte for byte or as cast), 3. table (a fresh resample of the source's)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...checkpoint.dtypes import (
    DTYPE_SIZES,
    DTYPE_WORDS,
    FLOAT_DTYPES,
    WORD_DTYPES,
    tensor_bytes,
    tensor_from_bytes,
    torch_dtype,
)
from ...checkpoint.safetensors import FileRange, read_bytes, read_header
from ...checkpoint.weights import SourceTensor, load_tensor
from ...conversion.plan import locate
from ...errors import InputError
from ...interpolate import resample_grid
from ...size import grid_text
from .subject import Check, Subject, check, is_parameter, some

CHUNK = 32 << 20  # bytes compared at a time: memory stays flat

if TYPE_CHECKING:
    pass


# ---------------------------------------------------------------- 1. files


def check_files(folder: Path) -> Check:
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
        parameters += sum(math.prod(t.shape) for t in entries if is_parameter(t.dtype))
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
        bad.append(f"{len(missing)} of {what} are missing ({some(missing)})")
    extra = [n for n in out.names if n not in set(kept)]
    if extra:
        dropped = [n for n in extra if n in source]  # the source's, but not the vision tower's
        bad += [f"{len(dropped)} tensor(s) outside the vision tower" + (" and its projection" if made.with_projection
                else "") + f" ({some(dropped)}), which a vision-only output drops"] if dropped else []  # fmt: skip
        foreign = [n for n in extra if n not in source]
        bad += [f"{len(foreign)} tensor(s) the source does not have ({some(foreign)})"] if foreign else []
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
