"""A picture of the position embeddings: the cosine-similarity map of the ViT paper's figure 7.

For an h×w grid, the picture is an h×w mosaic of tiles; the tile at row i, column j is itself h×w
and shows the cosine similarity of cell (i, j)'s position vector to every cell's. A learned table
shows each tile bright near its own place and dim far from it; a resampled table should show the
same pattern on its finer (or coarser) grid. Source and output side by side; every value is a k×k
block of screen pixels (k ≥ 1, enough for 800×400) placed at whole-pixel offsets and never
resampled, one blank value between tiles, so a 35×35 grid of 35×35 tiles stays legible and every
line between tiles has one width.

Needs matplotlib (`pip install 'xcomposer-resize[plot]'`); nothing else in xcr does.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint.source import missing_from_snapshot
from ..checkpoint.weights import load_tensor, open_checkpoint
from ..conversion import record
from ..conversion.configs import vision_sizes
from ..conversion.plan import locate
from ..errors import UsageError, XcrError
from ..interpolate import grid_side
from ..size import grid_text

if TYPE_CHECKING:
    import torch

PLOT_EXTRA = "pip install 'xcomposer-resize[plot]'"


@dataclass(frozen=True)
class Panel:
    """One table to draw: [prefix + h*w, C] for a grid (h, w), and its title."""

    table: Any  # torch.Tensor
    prefix: int
    title: str
    grid: tuple[int, int] | None = None  # None: a square grid


def require_matplotlib() -> None:
    """Fail early, in one line, when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise XcrError(f"--plot needs matplotlib, which is not installed: {PLOT_EXTRA}") from e


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_path(path: Path, shown: str | None = None) -> None:
    """Refuse, before any work, a --plot file that cannot or must not be written: not a .png name,
    a folder, a missing or read-only folder, a file that is not an earlier picture (xcr replaces
    only PNGs), or a place inside a checkpoint folder (a source or an output)."""
    shown = shown or str(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"--plot {shown}: the picture is a PNG; give a file name ending in .png")
    if path.is_dir():
        raise UsageError(f"--plot {shown} is a folder; give a file name ending in .png")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"--plot {shown}: the folder {parent} does not exist; create it or choose another file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--plot {shown}: the folder {parent} is not writable; choose another file")
    if path.exists() or path.is_symlink():
        try:
            with open(path, "rb") as f:
                is_png = f.read(8) == PNG_SIGNATURE
        except OSError:
            is_png = False
        if not is_png:
            raise UsageError(f"--plot {shown} exists and is not a PNG; xcr replaces only an earlier picture")
    if any((parent / name).exists() for name in ("config.json", "open_clip_config.json")):
        raise UsageError(
            f"--plot {shown} is inside the checkpoint folder {parent}; draw it outside the source and the output"
        )


MAX_TILES = 48  # tiles per side at most: a larger grid shows every k-th cell's tile (memory and pixels stay bounded)


def stride(g: int) -> int:
    """Show every `stride(g)`-th cell's tile of a g×g grid."""
    return -(-g // MAX_TILES)


def mosaic(table: torch.Tensor, prefix: int, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """[th*(h+1)-1, tw*(w+1)-1] float for an h×w grid (`shape`; None: square) and th×tw tiles, one
    for every stride(max(h, w))-th cell each way: tile (a, b) holds the cosine similarity of cell
    (a*stride, b*stride) to every cell, NaN between tiles."""
    import torch

    grid = table.detach().float().cpu().reshape(-1, table.shape[-1])[prefix:]
    if shape is None:
        side = grid_side(grid.shape[0])
        if side is None:
            raise XcrError(f"a table of {grid.shape[0]} grid rows is not a square grid")
        shape = (side, side)
    h, w = shape
    if h * w != grid.shape[0]:
        raise XcrError(f"a table of {grid.shape[0]} grid rows is not a {h}×{w} grid")
    k = stride(max(h, w))
    rows, cols = torch.arange(0, h, k), torch.arange(0, w, k)
    th, tw = len(rows), len(cols)
    unit = torch.nn.functional.normalize(grid, dim=1)
    picked = (rows[:, None] * w + cols[None, :]).reshape(-1)
    sim = (unit[picked] @ unit.T).reshape(th, tw, h, w)  # [a, b, y, x]
    out = torch.full((th * (h + 1) - 1, tw * (w + 1) - 1), float("nan"))
    for a in range(th):
        for b in range(tw):
            out[a * (h + 1) : a * (h + 1) + h, b * (w + 1) : b * (w + 1) + w] = sim[a, b]
    return out


def save(path: Path, panels: list[Panel], title: str = "") -> None:
    """Draw `panels` side by side into the PNG at `path` (at least 800×400 px)."""
    require_matplotlib()
    check_path(path)  # again: the output that landed may now be the folder it names
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    images = [mosaic(p.table, p.prefix, p.grid).numpy() for p in panels]
    # Every value is drawn as a k×k block of screen pixels, placed at whole-pixel offsets (figimage):
    # nothing is resampled, so every line between tiles is exactly k pixels wide.
    margin, gap, bottom, bar = 24, 48, 24, 16
    content_w = sum(m.shape[1] for m in images) + gap * (len(images) - 1)
    content_h = max(m.shape[0] for m in images)
    k = max(1, -(-(800 - 2 * margin - 80) // content_w), -(-(400 - 64 - bottom) // content_h))
    # each title wrapped to its panel's width (about 7 px a character), so narrow panels do not collide
    titles = [
        textwrap.fill(p.title, max(20, (m.shape[1] * k + gap - 8) // 7)) for p, m in zip(panels, images, strict=True)
    ]
    top = 44 + 19 * max(t.count("\n") + 1 for t in titles)
    width = 2 * margin + k * content_w + gap + bar + 56
    height = top + k * content_h + bottom
    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    cmap = plt.get_cmap("viridis")

    def colors(values: Any) -> Any:
        """RGBA bytes of `values` in [-1, 1]; NaN (between tiles) white."""
        rgba = cmap((np.nan_to_num(values, nan=0.0) + 1) / 2)
        rgba[np.isnan(values)] = (1.0, 1.0, 1.0, 1.0)
        return (rgba * 255).round().astype(np.uint8)

    x = margin
    for title_text, image in zip(titles, images, strict=True):
        h, w = image.shape[0] * k, image.shape[1] * k
        fig.figimage(
            np.kron(colors(image), np.ones((k, k, 1), dtype=np.uint8)),
            xo=x,
            yo=bottom + k * content_h - h,
            origin="upper",
        )
        fig.text((x + w / 2) / width, (bottom + k * content_h + 8) / height, title_text, ha="center", va="bottom",
                 fontsize=11)  # fmt: skip
        x += w + gap
    scale = np.linspace(1, -1, k * content_h)[:, None].repeat(bar, axis=1)
    fig.figimage(colors(scale), xo=x, yo=bottom, origin="upper")
    for value in (1, 0.5, 0, -0.5, -1):
        y = bottom + (value + 1) / 2 * (k * content_h)
        fig.text((x + bar + 4) / width, y / height, f"{value:g}", ha="left", va="center", fontsize=9)
    fig.text((x + bar / 2) / width, (bottom + k * content_h + 8) / height, "cosine", ha="center", va="bottom",
             fontsize=9)  # fmt: skip
    fig.text(0.5, (height - 12) / height, title or "position embeddings: each tile is one cell's cosine similarity "
             "to every cell", ha="center", va="top", fontsize=12)  # fmt: skip
    try:
        fig.savefig(path, format="png", dpi=dpi)
    except OSError as e:
        raise XcrError(f"cannot write the plot {path}: {e.strerror or e}; choose another file") from e
    finally:
        plt.close(fig)


def draw(path: Path, output: Path, source: Path | None = None) -> None:
    """Draw the position table of the checkpoint folder `output`, beside `source`'s when given."""
    out, family = _panel(output, "output" if source is not None else "")
    panels = [_panel(source, "source", family)[0]] if source is not None else []
    save(path, [*panels, out])


def recorded_source(folder: Path) -> Path | None:
    """The folder of the source `folder`'s record names, when it is on this machine: a Hub snapshot
    in the cache with its weights (nothing is downloaded). A local folder is not recorded by path."""
    rec = record.read(folder)
    if not rec or str(rec.get("source_fingerprint", "")).startswith("files:") or not rec.get("revision"):
        return None
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(str(rec["source"]), revision=str(rec["revision"]), local_files_only=True))
    except Exception:
        return None
    return None if missing_from_snapshot(snapshot) else snapshot


def _panel(folder: Path, role: str, forced: str | None = None) -> tuple[Panel, str]:
    """The panel of `folder`'s table, and the family it was read as (`forced`: as that family)."""
    _name, config, family = record.detect(folder, forced)
    sizes = vision_sizes(config, family)
    ckpt = open_checkpoint(folder, family.weight_files)
    found = locate(ckpt.shapes, family)
    name = found.pos
    if name is None:
        raise XcrError(f"{folder} has no vision position table to draw")
    table = load_tensor(ckpt.tensor(name))
    g = sizes.grid
    prefix = found.prefix(g)
    if table.shape[-2] - prefix != g[0] * g[1]:
        raise XcrError(f"{folder}: {name} does not hold the {grid_text(g)} grid its config states")
    rec = record.read(folder) if role == "output" else None
    method = f", {rec['mode']}" + (" antialias" if rec.get("antialias") else "") if rec else ""
    k = stride(max(g))
    every = f"; a tile for every {k} cells each way" if k > 1 else ""
    title = f"{role + ': ' if role else ''}{grid_text(g)} grid, {sizes.image_size.px}{method}{every}"
    return Panel(table, prefix, title, g), family.name
