"""The same resize inside a training script: a loaded transformers CLIP model, changed in place.

InternLM-XComposer's fine-tuning script calls `resize_pos()` whenever `img_size != 336`; that leaves
the config and the embedding module's own sizes at 336, which transformers ≥ 4.45 checks. Here the
table is resampled by the function `xcr resize` uses (`interpolate.resample_grid`, on the CPU by
default, float32, cast back once) and every size transformers reads is updated, so the model runs at
the new size without `interpolate_pos_encoding` and `save_pretrained` writes what `xcr resize` writes.
"""

from __future__ import annotations

from typing import Any

from .errors import UsageError
from .size import Size


def resize_model(
    model: Any, res: int | str | Size, *, mode: str = "bicubic", antialias: bool = False, device: str = "cpu"
) -> Any:
    """Resize the vision position embeddings of a loaded transformers CLIP model (CLIPModel,
    CLIPVisionModel, CLIPVisionModelWithProjection; any dtype, CPU or CUDA) to `res` pixels, in place;
    return the model.

    The position table [1 + g*g, C] becomes a new parameter [1 + G*G, C] (same dtype, device and
    requires_grad), `position_ids` becomes arange(1 + G*G) (persistent as before), the embedding
    module's `image_size`, `num_patches`, `num_positions` and the vision config's `image_size` say
    `res`. `device` is where the table is interpolated: "cpu" gives the command's numbers bit for
    bit whatever device the model is on. The same grid changes nothing.
    """
    import torch

    from .families import CLIP
    from .interpolate import ANTIALIAS_MODES, MODES, resample_grid
    from .options import check_res, res_arg, size

    wanted = size(res)
    if not wanted.is_square:
        raise UsageError(f"{res_arg(wanted)} is not square, and a CLIP model cannot be: {CLIP.square_only}")
    res = wanted.height
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if antialias and mode not in ANTIALIAS_MODES:
        raise UsageError(f"antialias=True works only with mode {' or '.join(ANTIALIAS_MODES)}, not {mode}")
    emb = _vision_embeddings(model)
    config = getattr(model.config, "vision_config", model.config)
    patch = int(emb.patch_size)
    weight = emb.position_embedding.weight
    rows, width = weight.shape
    old = int(round((rows - 1) ** 0.5))
    if 1 + old * old != rows:
        raise UsageError(f"the model's position table has {rows} rows, not a class row plus a square grid")
    check_res(wanted, patch, width, 1)
    grid = res // patch
    if grid == old:
        return model
    with torch.no_grad():
        table = resample_grid(weight.detach(), (grid, grid), 1, (old, old), mode, antialias, device)
    new = torch.nn.Embedding(1 + grid * grid, width, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(table)
    new.weight.requires_grad_(weight.requires_grad)
    emb.position_embedding = new
    persistent = "position_ids" not in getattr(emb, "_non_persistent_buffers_set", set())
    ids = torch.arange(1 + grid * grid, device=weight.device).expand((1, -1))
    emb.register_buffer("position_ids", ids, persistent=persistent)
    emb.image_size, emb.num_patches, emb.num_positions = res, grid * grid, grid * grid + 1
    config.image_size = res
    return model


def _vision_embeddings(model: Any) -> Any:
    """The vision embedding module: the one with a patch embedding and a position table."""
    for _name, module in model.named_modules():
        if hasattr(module, "patch_embedding") and hasattr(module, "position_embedding"):
            return module
    raise UsageError(f"{type(model).__name__} has no vision embeddings (patch_embedding, position_embedding)")
