"""`xcr inspect`: what xcr sees in a checkpoint, without converting it.

For a folder everything comes from the files (configs, and the weights' headers: no tensor is
read). For a Hub repo id only metadata is fetched: the small files, the file listing with sizes,
and, for safetensors weights, their headers through HTTP range requests. Weights already in the
cache are read like a folder's. A `pytorch_model.bin` that is not cached cannot be looked into
without downloading it: then the table is what config.json implies, marked as such.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint.dtypes import FLOAT_DTYPES, WORD_DTYPES
from ..checkpoint.source import hub_error, is_metadata, resolve_source, shards_of
from ..checkpoint.weights import open_checkpoint, pick_weights, read_json, walk
from ..conversion import record
from ..conversion.configs import VisionSizes, vision_sizes
from ..conversion.plan import disagreement, locate, role
from ..errors import HubError, InputError, UsageError
from ..families import Family, VlmFamily, flag_of
from ..families.transformers import PROCESSOR_FILES, SIZE_KEYS
from ..options import largest_grid
from .plot import check_path, draw, recorded_source, require_matplotlib

if TYPE_CHECKING:
    from ..checkpoint.source import Source


@dataclass
class Table:
    """The vision position table: its name, shape and dtype, and where that was learned: from the
    weights' own header ("weights"), or implied by config.json ("config")."""

    name: str
    shape: list[int]
    dtype: str
    known_from: str


@dataclass
class Inspection:
    """What `xcr inspect` reports; `to_json()` is its --json object."""

    source: str
    revision: str | None
    folder: str  # where its files are on this machine (a Hub snapshot in the cache)
    family: str
    family_flag: str  # how --family spells it
    model_type: str | None
    architectures: list[str]
    image_size: int | list[int]  # 490, or [height, width] when not square
    patch_size: int
    grid: list[int]
    prefix_tokens: int
    stated: bool  # config.json states image_size and patch_size (else transformers' defaults)
    accepted_res: dict[str, Any]  # min, max (a square's side); multiples of multiple_of fit exactly; the grid
    # (res // patch) a multiple of grid_multiple_of; non_square: whether HxW is accepted; square_only: why not
    method: str  # the family's own run-time interpolation, xcr's default for it
    table: Table | None
    position_ids: str | None
    parameters: int | None  # in floating tensors (the integer id buffers are not parameters)
    dtypes: dict[str, int]  # dtype → values stored in it, id buffers included
    weights_format: str | None
    weight_files: list[dict[str, Any]]  # name, bytes
    sharded: bool
    weights_local: bool  # the weights are on this machine (a folder, or in the cache)
    download: dict[str, Any] | None  # Hub: what a conversion would download {files, bytes}
    files: list[dict[str, Any]]  # every file of the source: name, bytes (None when unknown), role
    processors: dict[str, dict[str, Any]] = field(default_factory=dict)  # file → its image sizes
    config_file: str = "config.json"  # the model config's file (open_clip_config.json)
    library: str = "transformers"  # the library that loads the checkpoint (whose defaults apply)
    problems: list[str] = field(default_factory=list)  # what stops a conversion (a config the weights contradict)
    tower: str | None = None  # a VLM: its vision tower's family and where its tensors are
    image_tokens: int | None = None  # a VLM: image tokens per image (per tile) at this size
    image_tokens_rule: str | None = None  # a VLM: how that count follows the grid

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def inspect(model: str, revision: str | None = None, token: str | None = None, family: str | None = None,
            plot: str | None = None) -> Inspection:  # fmt: skip
    """Inspect `model` (a folder or a Hub repo id) without converting or downloading weights;
    `family` forces a family (as `resize --family`). `plot`: draw its position embeddings into that
    PNG (beside its source's, for an xcr output whose source is in the cache); needs its weights."""
    if plot is not None:
        require_matplotlib()
        check_path(Path(plot).expanduser(), plot)
    found = _look(model, revision, token, family)
    if plot is not None:
        if not found.weights_local:
            raise UsageError(f"--plot needs the weights on this machine, and those of {found.source} are not")
        folder = Path(found.folder)
        draw(Path(plot).expanduser(), folder, recorded_source(folder))
    return found


def _look(model: str, revision: str | None, token: str | None, family: str | None) -> Inspection:
    if not model.strip():
        raise UsageError("the checkpoint to inspect is empty; give a checkpoint folder or a Hub repo id")
    source = resolve_source(model, revision=revision, token=token, quiet=True, need_weights=False)
    config_name, config, adapter = record.detect(source.folder, family)
    sizes_by_name = _listing(source, token)
    names = sorted(sizes_by_name)
    weights = _weights(source, names, adapter.weight_files, token)
    local = bool(weights) and all((source.folder / w).is_file() for w in weights)
    tensors = _tensors(source, weights, local, token, adapter.weight_files)
    found = locate({n: shape for n, (_dtype, shape) in (tensors or {}).items()}, adapter)
    sizes = vision_sizes(config, adapter)
    if tensors is not None:
        sizes = sizes.with_kernel(adapter, found.kernel)
    table = _table(tensors, found.pos, config, adapter, sizes)
    prefix = found.prefix(sizes.grid)
    dtypes: dict[str, int] = {}
    for dtype, shape in (tensors or {}).values():
        dtypes[dtype] = dtypes.get(dtype, 0) + math.prod(shape)
    problems = []
    if table is not None and table.known_from == "weights" and table.shape[-2] - prefix != math.prod(sizes.grid):
        problems.append(
            disagreement(sizes, table.shape[-2] - prefix, found.kernel, table.name, adapter, config_name)
            + "; xcr resize refuses it until they agree"
        )
    return Inspection(
        source=source.display,
        revision=source.revision,
        folder=str(source.folder),
        family=adapter.name,
        family_flag=flag_of(adapter),
        model_type=str(config["model_type"]) if config.get("model_type") else None,
        architectures=[str(a) for a in config.get("architectures") or [config.get("architecture") or ""] if a],
        image_size=sizes.image_size.json(),
        patch_size=sizes.patch_size,
        grid=list(sizes.grid),
        prefix_tokens=prefix,
        stated=sizes.stated,
        accepted_res=_accepted(
            sizes, table.shape[-1] if table else 1024, prefix, adapter.square_reason(config), _step(adapter, config)
        ),
        method=adapter.mode + (", antialias" if adapter.antialias else "") + f" (= {adapter.runtime.replace('`', '')})",
        table=table,
        position_ids=found.ids if tensors is not None else None,
        parameters=sum(n for d, n in dtypes.items() if d in FLOAT_DTYPES) if tensors is not None else None,
        dtypes=dtypes,
        **_weight_files(source, weights, sizes_by_name, local),
        files=[
            {
                "name": n,
                "bytes": sizes_by_name[n],
                "role": role(n, adapter, config_name, weights, source.listing is not None),
            }
            for n in names
        ],
        processors=_processors(source),
        config_file=config_name,
        library=adapter.library,
        problems=problems,
        **_vlm(adapter, config, found.pos, sizes),
    )


def _weight_files(source: Source, weights: list[str], sizes: dict[str, int | None], local: bool) -> dict[str, Any]:
    """The Inspection fields of the weight files `weights` (their index first, if sharded) and, for a
    Hub repo, what `xcr resize` would download: its metadata files and these."""
    download = None
    if source.repo_id and source.listing is not None:
        wanted = [n for n in sorted(sizes) if is_metadata(n)] + weights
        download = {"files": wanted, "bytes": sum(sizes.get(n) or 0 for n in wanted)}
    index = bool(weights) and weights[0].endswith(".index.json")
    return {
        "weights_format": ("safetensors" if weights[0].endswith(("safetensors", "safetensors.index.json")) else "bin")
        if weights
        else None,
        "weight_files": [{"name": w, "bytes": sizes.get(w)} for w in weights if not w.endswith(".index.json")],
        "sharded": index,
        "weights_local": local,
        "download": download,
    }


def _vlm(family: Family, config: dict[str, Any], pos: str | None, sizes: VisionSizes) -> dict[str, Any]:
    """A VLM's tower, its image-token count and how the count follows the grid (nothing for a bare tower)."""
    if not isinstance(family, VlmFamily) or family.vision_only_form(config)[0]:
        return {}
    tower = family.tower.name if family.tower else family.name
    at = pos[: -len(family.pos_suffix)] if pos else family.tower_prefixes[0]
    return {
        "tower": f"{tower} at {at}",
        "image_tokens": family.tokens(config, sizes.grid),
        "image_tokens_rule": family.tokens_rule(config),
    }


def _weights(source: Source, names: list[str], prefer: tuple[str, ...], token: str | None) -> list[str]:
    """The weight files a conversion reads: the preferred top-level file, or an index and its shards."""
    picked = pick_weights([n for n in names if "/" not in n], prefer)
    if not picked:
        return []
    return [picked, *_shards(source, picked, token)] if picked.endswith(".index.json") else [picked]


def _table(
    tensors: dict[str, tuple[str, tuple[int, ...]]] | None, pos: str | None, config: dict[str, Any], adapter: Family,
    sizes: VisionSizes,
) -> Table | None:  # fmt: skip
    """The table as the weights' headers state it, or (a .bin not on this machine) as config.json implies."""
    if tensors is not None:
        return Table(pos, list(tensors[pos][1]), tensors[pos][0], "weights") if pos else None
    width = next((b.get("hidden_size") for b in adapter.vision_config_blocks(config) if b.get("hidden_size")), None)
    if not isinstance(width, int):
        return None
    rows = adapter.num_prefix_tokens + sizes.grid[0] * sizes.grid[1]
    shape = [1, rows, width] if adapter.batched else [rows, width]
    return Table(adapter.pos_suffix, shape, _config_dtype(config), "config")


def _accepted(sizes: VisionSizes, width: int, prefix: int, square_reason: str | None, step: int) -> dict[str, Any]:
    """The sizes `resize --res` accepts: multiples of the patch (they fit exactly) up to the largest the
    table allows, whose grid is a multiple of `step` (a VLM that folds or pools cells into tokens)."""
    return {
        "multiple_of": sizes.patch_size,
        "min": sizes.patch_size * step,
        "max": largest_grid(width, prefix) // step * step * sizes.patch_size,
        "grid_multiple_of": step,
        "non_square": not square_reason,
        "square_only": square_reason or None,
    }


def _step(family: Family, config: dict[str, Any]) -> int:
    try:
        return family.grid_step(config)
    except InputError:  # a config the family cannot read a step from: resize says why
        return 1


def _listing(source: Source, token: str | None) -> dict[str, int | None]:
    """Every file of the source → its size: a folder's own files; a repo's listing at its commit."""
    if source.listing is None:  # a folder (or a cached snapshot, offline)
        out: dict[str, int | None] = {}
        for path, rel in walk(source.folder):
            try:
                out[rel] = path.stat().st_size
            except OSError:
                out[rel] = None
        return out
    from huggingface_hub import HfApi

    try:
        tree = HfApi().list_repo_tree(source.repo_id or "", revision=source.revision, recursive=True, token=token)
        return {e.path: getattr(e, "size", None) for e in tree if getattr(e, "size", None) is not None}
    except Exception as e:
        raise hub_error(e, source.repo_id or "", source.revision) from e


def _shards(source: Source, index: str, token: str | None) -> list[str]:
    """The shards an index names (the index is small: downloaded when not there)."""
    path = source.folder / index
    if not path.is_file():
        from huggingface_hub import hf_hub_download

        try:
            path = type(path)(hf_hub_download(source.repo_id or "", index, revision=source.revision, token=token))
        except Exception as e:
            raise hub_error(e, source.repo_id or "", source.revision) from e
    return shards_of(path, source.repo_id or source.display)


def _tensors(
    source: Source, weights: list[str], local: bool, token: str | None, prefer: tuple[str, ...] = ()
) -> dict[str, tuple[str, tuple[int, ...]]] | None:
    """Every tensor's (dtype, shape), from headers; None when that needs a download (.bin)."""
    if local:
        ckpt = open_checkpoint(source.folder, prefer)
        return {t.name: (t.dtype, t.shape) for s in ckpt.shards for t in s.tensors}
    files = [w for w in weights if w.endswith(".safetensors")]
    if not files or not source.repo_id:
        return None
    from huggingface_hub import HfApi

    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name in files:
        try:
            meta = HfApi().parse_safetensors_file_metadata(source.repo_id, name, revision=source.revision, token=token)
        except Exception as e:
            raise HubError(
                f"cannot read the header of {name} in {source.repo_id}: {hub_error(e, source.repo_id, source.revision)}"
            ) from e
        out.update({k: (v.dtype, tuple(v.shape)) for k, v in meta.tensors.items()})
    return out


def _config_dtype(config: dict[str, Any]) -> str:
    return WORD_DTYPES.get(str(config.get("torch_dtype") or config.get("dtype") or "float32"), "F32")


def _processors(source: Source) -> dict[str, dict[str, Any]]:
    """The image sizes each processor file states, as they are written."""
    out: dict[str, dict[str, Any]] = {}
    for path, rel in walk(source.folder):
        if path.name in PROCESSOR_FILES and path.is_file():
            data = read_json(path)
            blocks = [("", data)] + [
                (f"{k}.", v) for k, v in data.items() if k.endswith("processor") and isinstance(v, dict)
            ]
            found = {prefix + key: b[key] for prefix, b in blocks for key in SIZE_KEYS if b.get(key) is not None}
            out[rel] = found
    return out
