"""Pure tensor math for position embeddings. No files, no CLI.

This is the only module that calls `torch.nn.functional.interpolate`. The default
(bicubic, `align_corners=False`, no antialias, `size=`, float32 compute) is bit-identical to
InternLM-XComposer's `resize_pos` and to transformers' `interpolate_pos_encoding`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MODES = ("bicubic", "bilinear", "nearest", "area")
ANTIALIAS_MODES = ("bicubic", "bilinear")


def resample_grid(
    pos: torch.Tensor,
    new_grid: tuple[int, int],
    num_prefix_tokens: int = 1,
    old_grid: tuple[int, int] | None = None,
    mode: str = "bicubic",
    antialias: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Resample a position table from `old_grid` to `new_grid`.

    Args:
        pos: [P + h*w, C] (or [1, P + h*w, C]); P prefix rows (class token, registers) come first,
            then the grid rows in row-major (h, w) order.
        new_grid: (H, W) of the output grid.
        num_prefix_tokens: P, rows copied unchanged, never interpolated.
        old_grid: (h, w); inferred as a square when None.
        mode: bicubic (default), bilinear, nearest or area.
        antialias: only for bicubic/bilinear; changes numbers even when upsampling.
        device: where to interpolate (None: where `pos` lives; "auto": CUDA when available, else
            CPU). The result comes back on `pos`'s device.
        dtype: the result's dtype (None: `pos`'s). The float32 result is cast to it once, so a
            bfloat16 table resampled to float32 is never rounded to bfloat16 on the way.

    Returns:
        [P + H*W, C] (or [1, P + H*W, C] for a batched input). When the grid is unchanged, `pos`
        itself is returned untouched (cast to `dtype` when one is given).
    """
    import torch
    import torch.nn.functional as F

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if antialias and mode not in ANTIALIAS_MODES:
        raise ValueError(f"antialias works only with {' or '.join(ANTIALIAS_MODES)}, not {mode}")
    batched = pos.dim() == 3
    table = pos[0] if batched else pos
    if table.dim() != 2:
        raise ValueError(f"expected a [rows, channels] table, got shape {tuple(pos.shape)}")
    rows, channels = table.shape
    if old_grid is None:
        side = grid_side(rows - num_prefix_tokens)
        if side is None:
            raise ValueError(f"{rows} rows are not {num_prefix_tokens} prefix rows plus a square grid")
        old_grid = (side, side)
    if num_prefix_tokens + old_grid[0] * old_grid[1] != rows:
        raise ValueError(f"{rows} rows do not hold {num_prefix_tokens} prefix rows + a {old_grid} grid")
    if tuple(new_grid) == tuple(old_grid):
        return pos if dtype is None else pos.to(dtype)

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    work = table.to(device=device if device is not None else table.device, dtype=torch.float32)
    prefix, grid = work[:num_prefix_tokens], work[num_prefix_tokens:]
    grid = grid.reshape(1, old_grid[0], old_grid[1], channels).permute(0, 3, 1, 2)
    kwargs = {"align_corners": False, "antialias": antialias} if mode in ANTIALIAS_MODES else {}
    grid = F.interpolate(grid, size=tuple(new_grid), mode=mode, **kwargs)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], channels)
    out = torch.cat((prefix, grid), dim=0).to(device=table.device, dtype=dtype or table.dtype)
    return out.unsqueeze(0) if batched else out


def grid_side(n: int) -> int | None:
    """The side g of a square grid with n = g*g cells, or None when n is not a positive square."""
    if n <= 0:
        return None
    g = int(round(n**0.5))
    return g if g * g == n else None
