"""The same resize inside a training script: a loaded transformers model, changed in place.

InternLM-XComposer's fine-tuning script calls `resize_pos()` whenever `img_size != 336`; that leaves
the config and the embedding module's own sizes at 336, which transformers ≥ 4.45 checks. Here the
table is resampled by the function `xcr resize` uses (`interpolate.resample_grid`, on the CPU by
default, float32, cast back once) and every size transformers reads is updated, so the model runs at
the new size without `interpolate_pos_encoding` and `save_pretrained` writes what `xcr resize` writes.

Everything that differs between families (which parameter is the table and in which form, its prefix
rows, the id buffer, the default interpolation, which config states the size, whether a non-square
size is possible) is asked of the family's adapter in `families.py`, the one `xcr resize` uses.
"""

from __future__ import annotations

import copy
import warnings
from typing import TYPE_CHECKING, Any

from ..errors import InputError, UsageError, arg
from ..families import INTERNVIT, REFUSED, TOKEN_NAMES, TRANSFORMERS, VLMS, TransformersFamily, VlmFamily
from ..interpolate import grid_side, resample_grid
from ..options import build_model_options, check_res, res_arg
from ..size import Size, grid_text
from .configs import diff

if TYPE_CHECKING:
    import torch

# wrappers whose parameters are the model's own only until they are built: resizing inside them is too late
WRAPPERS = ("DistributedDataParallel", "FullyShardedDataParallel")


def resize_model(
    model: Any,
    res: int | str | Size,
    *,
    mode: str | None = None,
    antialias: bool | None = None,
    device: str = "cpu",
) -> Any:
    """Resize the vision position table of a loaded transformers model to `res`, in place; return it.

    `model` is a CLIP, SigLIP, DINOv2, DINOv2-with-registers, ViT or InternVL vision model (any head, any
    dtype, CPU or CUDA), or a module that holds one such tower (XComposer's `model.vit`, a whole LLaVA):
    the families `xcr resize` converts that transformers implements. In a whole VLM, its config also
    states what follows from the new grid (token counts, anyres tiles), as `xcr resize` writes it. `res` is one size: pixels (490), or
    "448x672" / `Size(448, 672)` (height x width) for ViT, which runs non-square; the grid is
    `res // patch`. `mode`/`antialias` None: the family's own run-time interpolation (what `xcr resize`
    applies). `device` ("cpu", "cuda", "auto") is where the table is interpolated: "cpu" gives the
    command's numbers bit for bit whatever device the model is on.

    The table [P + h*w, C] (CLIP, SigLIP) or [1, P + h*w, C] (ViT, DINOv2) becomes a new parameter
    [P + H*W, C] / [1, P + H*W, C] (same dtype, device and requires_grad; P prefix rows copied),
    `position_ids` (where the family has it) becomes arange(P + H*W), and the embeddings' image_size,
    num_patches, num_positions (and the patch embedding's) and the vision config's image_size say
    `res`. The same grid keeps the table and only restates the sizes.

    Call it before building the optimizer and before wrapping the model in DDP/FSDP: those hold the
    old table's parameter, which no longer takes part in the forward pass.
    """
    import torch

    options = build_model_options(res, mode=mode, antialias=antialias, device=device)
    wanted = options.res
    where, tower, family = _tower(model)
    params = dict(tower.named_parameters())
    pos_name = _find(family, list(params), family.pos_suffix, where)
    if pos_name is None:
        raise UsageError(f"{where} has no vision position table (*{family.pos_suffix}); there is nothing to resize")
    weight = params[pos_name]
    _check_table(weight, family, f"{where}.{pos_name}")
    mode_, antialias_ = options.method(family)
    config = family.vision_config_of(tower.config)

    rows, width = weight.shape[-2:]
    patch, prefix, old = _grid_of(family, params, config, rows, pos_name, where)

    _check_square(tower, family, wanted)
    note = check_res(wanted, patch, width, prefix)
    if note:
        warnings.warn(note, UserWarning, stacklevel=2)
    grid = wanted.grid(patch)
    new_rows = prefix + grid[0] * grid[1]
    vlm = _vlm_updates(model, tower, wanted, patch)

    owner_name, _, attr = pos_name.rpartition(".")
    owner = tower.get_submodule(owner_name)
    embeddings = tower.get_submodule(owner_name.rpartition(".")[0]) if family.embedding_weight else owner
    updates = _size_updates(embeddings, wanted, grid, new_rows)
    if grid != old:
        with torch.no_grad():
            table = resample_grid(weight.detach(), grid, prefix, old, mode_, antialias_, options.device)
        setattr(owner, attr, torch.nn.Parameter(table, requires_grad=weight.requires_grad))
        if family.embedding_weight:
            owner.num_embeddings = new_rows
    _set_ids(tower, family, new_rows)
    for module, name, value in updates:
        setattr(module, name, value)
    for vision in _vision_configs(tower, family):
        family.set_model_size(vision, wanted)
    for where, key, value in vlm:
        if isinstance(where, dict):
            where[key] = value
        else:
            setattr(where, key, value)
    return model


def _vlm_updates(model: Any, tower: Any, res: Size, patch: int) -> list[tuple[Any, str, Any]]:
    """(config object, attribute, value) for what a VLM around `tower` (LLaVA, LLaVA-NeXT, PaliGemma,
    InternVL, Gemma 3, XComposer2) states that follows from the tower's size: its own copy of the vision
    size, token counts, anyres tiles, `img_size`; what `xcr resize` writes into its config.json (the
    family's `set_size`). Computed before anything changes, so a refusal leaves the model as it was."""
    kinds = {t for f in VLMS for t in f.model_types}
    found: dict[int, tuple[Any, dict[str, Any], VlmFamily]] = {}
    for module in model.modules():
        config: Any = getattr(module, "config", None)
        if getattr(config, "model_type", None) not in kinds or id(config) in found:
            continue
        data = config.to_dict()
        family = next((f for f in VLMS if f.matches(data)), None)
        if family is not None and any(m is tower for m in module.modules()):
            found[id(config)] = (config, data, family)
    updates: list[tuple[Any, str, Any]] = []
    for config, before, family in found.values():
        after = copy.deepcopy(before)
        try:
            adapter = family.for_config(after)
            problem = adapter.refusal(after, res)
            if not problem:
                adapter.set_size(after, res, patch)
        except InputError as e:
            problem = e.message
        if problem:
            raise UsageError(f"{type(model).__name__}: {problem}")
        updates += _changed(config, before, after)
    return updates


def _changed(config: Any, before: dict[str, Any], after: dict[str, Any]) -> list[tuple[Any, str, Any]]:
    """(object, attribute or key, value) that make the config object `config` (whose to_dict() is
    `before`) say `after`: each changed leaf where it lives, in a sub-config object (vision_config,
    text_config) or a plain dict. `set_size` only sets keys, so no leaf is removed."""
    out: list[tuple[Any, str, Any]] = []
    for path, _, value in diff(before, after):
        target = config
        for key in path[:-1]:
            target = target[key] if isinstance(target, dict) else getattr(target, key)
        out.append((target, path[-1], value))
    return out


def _grid_of(
    family: TransformersFamily, params: dict[str, Any], config: Any, rows: int, pos_name: str, where: str
) -> tuple[int, int, tuple[int, int]]:
    """(patch, prefix rows, grid) of a loaded table with `rows` rows: the config's grid when the table
    has its rows, else the square transformers reads (e.g. after XComposer's resize_pos)."""
    patch = _patch(family, params, config, where)
    tokens = {n: tuple(p.shape) for n, p in params.items() if n.rsplit(".", 1)[-1] in TOKEN_NAMES}
    stated = _stated(getattr(config, "image_size", None))
    stated_grid = stated.grid(patch) if stated is not None else None
    cells = stated_grid[0] * stated_grid[1] if stated_grid else rows
    prefix = family.prefix_rows(rows, cells, tokens)
    if stated_grid is not None and prefix + cells == rows:
        return patch, prefix, stated_grid
    side = grid_side(rows - prefix)
    if side is None:
        said = f", nor the {grid_text(stated_grid)} grid its config states" if stated_grid else ""
        raise UsageError(
            f"{where}'s position table {pos_name} has {rows} rows: not {prefix} prefix row(s) plus a square grid"
            f"{said}; it is not a table transformers can run"
        )
    return patch, prefix, (side, side)


def _check_square(tower: Any, family: TransformersFamily, wanted: Size) -> None:
    """Refuse a non-square size for a model whose architecture reads its table as a square."""
    architectures = [type(tower).__name__, *(getattr(tower.config, "architectures", None) or [])]
    square_reason = family.square_reason({"architectures": architectures})
    if not wanted.is_square and square_reason:
        raise UsageError(
            f"{res_arg(wanted)} is not square, and a {family.name} model cannot be: {square_reason}; "
            f"give one size such as {wanted.height}"
        )


def _tower(model: Any) -> tuple[str, Any, TransformersFamily]:
    """(where, module, family): the one vision tower of a family with a transformers class in
    `model` (`model` itself, or the outermost such module inside it), found by its config's
    model_type as `xcr resize` finds a checkpoint's family."""
    import torch

    if isinstance(model, type):
        raise UsageError(
            f"{arg('model')} is the class {model.__name__}, not a model: load one first, e.g. "
            f"{model.__name__}.from_pretrained(...)"
        )
    if not isinstance(model, torch.nn.Module):
        raise UsageError(
            f"{arg('model')} must be a loaded transformers model (a torch.nn.Module such as CLIPVisionModel), "
            f"not {type(model).__name__}; to resize a checkpoint on disk, use resize()"
        )
    served = [*TRANSFORMERS, INTERNVIT]  # bare towers; inside a VLM, its tower is found as one of them
    found: list[tuple[str, Any, TransformersFamily]] = []
    refused: tuple[str, str] | None = None
    for path, module in model.named_modules():
        if type(module).__name__ in WRAPPERS or type(module).__name__.startswith("FSDP"):
            raise UsageError(
                f"{arg('model')} is wrapped in {type(module).__name__}: call resize_model on the model before "
                "wrapping it (the table becomes a new parameter, which a wrapper built earlier does not hold)"
            )
        if any(path.startswith(p + ".") or (p == "" and path) for p, _, _ in found):
            continue  # inside a tower already found
        model_type = getattr(getattr(module, "config", None), "model_type", None)
        if not isinstance(model_type, str):
            continue
        family = next((f for f in served if model_type in f.model_types), None)
        if family is not None:
            found.append((path, module, family))
        elif model_type in REFUSED and refused is None:
            refused = (path, model_type)
    if len(found) > 1:
        raise UsageError(
            f"{arg('model')} holds {len(found)} vision towers ({', '.join(_where(p) for p, _, _ in found)}); "
            "pass the one to resize"
        )
    if found:
        path, module, family = found[0]
        return _where(path), module, family
    if refused is not None:
        raise UsageError(f"{_where(refused[0])} is {REFUSED[refused[1]]}")
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    what = f"{type(model).__name__}" + (f" (model_type {model_type!r})" if isinstance(model_type, str) else "")
    kinds = ", ".join(f.name for f in served)
    raise UsageError(
        f"{arg('model')} is a {what} with no vision tower resize_model knows; it resizes transformers' {kinds} "
        "models (timm and open_clip checkpoints: resize() or xcr resize on the files)"
    )


def _where(path: str) -> str:
    """How a messages names a module of the model: `model`, `model.vit.vision_tower`."""
    return f"model.{path}" if path else "model"


def _find(family: TransformersFamily, names: list[str], suffix: str, where: str) -> str | None:
    try:
        return family.find(names, suffix)
    except InputError as e:
        raise UsageError(f"{where}: {e}") from None


def _check_table(weight: torch.Tensor, family: TransformersFamily, name: str) -> None:
    """Refuse a table resize_model cannot resample: not loaded, sharded, not float, not the family's form."""
    if weight.is_meta:
        raise UsageError(
            f"{name} is on the meta device: the model was built without its weights (init_empty_weights, "
            "device_map offloading); load them first, then call resize_model"
        )
    if type(weight.data).__name__ == "DTensor":
        raise UsageError(
            f"{name} is sharded (a DTensor: FSDP2 or tensor parallelism); call resize_model before sharding the model"
        )
    form = "[1, rows, channels]" if family.batched else "[rows, channels]"
    if (
        not weight.is_floating_point()
        or weight.dim() != (3 if family.batched else 2)
        or (family.batched and weight.shape[0] != 1)
        or weight.shape[-2] == 0
    ):
        raise UsageError(
            f"{name} is {str(weight.dtype).removeprefix('torch.')} {list(weight.shape)}; a {family.name} "
            f"position table is a float {form} table"
        )


def _patch(family: TransformersFamily, params: dict[str, Any], config: Any, where: str) -> int:
    """The patch size: the patch embedding kernel's [C, 3, p, p], else the config's."""
    kernel = _find(family, list(params), family.patch_suffix, where)
    if kernel is not None and params[kernel].dim() == 4:
        p, q = params[kernel].shape[-2:]
    else:
        stated = getattr(config, "patch_size", None)
        p, q = stated if isinstance(stated, (list, tuple)) and len(stated) == 2 else (stated, stated)
    if type(p) is not int or p != q or p <= 0:
        raise UsageError(f"{where} has patches of {p}×{q} px; resize_model resizes grids of square patches")
    return p


def _stated(image_size: object) -> Size | None:
    """The size a config's image_size states (an int, or [height, width] as a list or tuple)."""
    return Size.from_json(list(image_size) if isinstance(image_size, tuple) else image_size)


def _set_ids(tower: Any, family: TransformersFamily, rows: int) -> None:
    """Make the position-id buffer (where the family has one) arange(rows), persistent as it was."""
    import torch

    buffers = dict(tower.named_buffers())
    name = family.find(list(buffers), family.ids_suffix)
    if name is None or buffers[name].shape[-1] == rows:
        return
    old = buffers[name]
    owner_name, _, attr = name.rpartition(".")
    owner = tower.get_submodule(owner_name)
    ids = torch.arange(rows, device=old.device, dtype=old.dtype)
    persistent = attr not in getattr(owner, "_non_persistent_buffers_set", set())
    owner.register_buffer(attr, ids.expand((1, -1)) if old.dim() == 2 else ids, persistent=persistent)


def _size_updates(embeddings: Any, res: Size, grid: tuple[int, int], rows: int) -> list[tuple[Any, str, object]]:
    """(module, attribute, value) for every size transformers reads in the embeddings module and its
    patch embedding, where they exist: image_size (an int or (height, width), as found), num_patches,
    num_positions. Computed before anything changes, so a refusal leaves the model as it was."""
    updates: list[tuple[Any, str, object]] = []
    for module in (embeddings, getattr(embeddings, "patch_embeddings", None)):
        if module is None:
            continue
        old = getattr(module, "image_size", None)
        if isinstance(old, (tuple, list)):
            updates.append((module, "image_size", type(old)(res.sides)))
        elif isinstance(old, int):
            if not res.is_square:
                raise UsageError(
                    f"{type(module).__name__}.image_size holds one side ({old}), so it cannot state {res.px}"
                )
            updates.append((module, "image_size", res.height))
        if isinstance(getattr(module, "num_patches", None), int):
            updates.append((module, "num_patches", grid[0] * grid[1]))
        if isinstance(getattr(module, "patch_shape", None), tuple):  # InternViT's
            updates.append((module, "patch_shape", grid))
    if isinstance(getattr(embeddings, "num_positions", None), int):
        updates.append((embeddings, "num_positions", rows))
    return updates


def _vision_configs(tower: Any, family: TransformersFamily) -> list[Any]:
    """Every distinct config object in the tower that states the vision size (one, usually: a
    transformers model shares its config with its modules)."""
    found: dict[int, Any] = {}
    for module in tower.modules():
        config = getattr(module, "config", None)
        if getattr(config, "model_type", None) in family.model_types:
            vision = family.vision_config_of(config)
            found.setdefault(id(vision), vision)
    return list(found.values())
