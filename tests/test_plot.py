"""--plot: the picture of the position embeddings is a real, readable PNG of the table it shows."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.builders import build, smooth_table
from tests.hubserver import HubServer
from tests.test_cli import one_error_line
from xcomposer_resize import resize


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG file"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return width, height


def test_the_mosaic_shows_every_cell_against_every_cell() -> None:
    from xcomposer_resize.commands.plot import mosaic

    table = smooth_table(5, 16)
    m = mosaic(table, 1)
    assert m.shape == (5 * 6 - 1, 5 * 6 - 1)
    for i in range(5):
        for j in range(5):
            assert m[i * 6 + i, j * 6 + j].item() == pytest.approx(1.0, abs=1e-5), "each cell is itself"
    assert torch.isnan(m[5, :]).all() and torch.isnan(m[:, 5]).all(), "a blank line between tiles"


def test_inspect_plot_of_an_output_beside_its_source(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    rid = f"tester/plot-{tmp_path.name[-8:]}"
    hub.add(rid, build(tmp_path / "src", table="smooth"))
    resize(rid, 490, tmp_path / "out")
    r = xcr("inspect", tmp_path / "out", "--plot", tmp_path / "both.png")
    assert r.code == 0, r.err
    width, height = png_size(tmp_path / "both.png")
    assert width >= 800 and height >= 400
    r = xcr("inspect", tmp_path / "src", "--plot", tmp_path / "one.png")
    assert r.code == 0, r.err
    assert png_size(tmp_path / "one.png") < (width, height), "one panel is narrower than two"


def test_two_tables_give_two_pictures(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    a, b = make_ckpt(seed=1), make_ckpt(seed=2)
    assert xcr("inspect", a, "--plot", tmp_path / "a.png").code == 0
    assert xcr("inspect", b, "--plot", tmp_path / "b.png").code == 0
    assert xcr("inspect", a, "--plot", tmp_path / "a2.png").code == 0
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "a2.png").read_bytes(), "the same table, the same picture"


def test_resize_plot_one_per_output(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    r = xcr("resize", "--model", src, "--res", 224, "--res", 490, "--out", tmp_path / "o-{res}",
            "--plot", tmp_path / "p-{res}.png", "--quiet")  # fmt: skip
    assert r.code == 0, r.err
    assert png_size(tmp_path / "p-224.png")[0] < png_size(tmp_path / "p-490.png")[0]
    r = xcr("resize", "--model", src, "--res", 224, "--res", 490, "--out", tmp_path / "q-{res}",
            "--plot", tmp_path / "one.png")  # fmt: skip
    assert r.code == 2 and "--plot names one file; with several resolutions it must hold {res}" in one_error_line(r.err)
    assert not (tmp_path / "q-224").exists(), "refused before any work"


def test_without_matplotlib_one_line_before_any_work(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "out", "--plot", tmp_path / "p.png")
    assert r.code == 1
    assert one_error_line(r.err) == (
        "xcr: error: --plot needs matplotlib, which is not installed: pip install 'xcomposer-resize[plot]'"
    )
    assert not (tmp_path / "out").exists()


def test_a_plot_path_that_would_harm_is_refused_before_any_work(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    (tmp_path / "notes.png").write_text("my notes, not a picture")
    cases = {
        str(src / "config.json"): "the picture is a PNG; give a file name ending in .png",
        str(src / "plot.png"): "is inside the checkpoint folder",
        str(tmp_path / "x.jpg"): "give a file name ending in .png",
        "-": "give a file name ending in .png",
        str(tmp_path / "missing" / "p.png"): "does not exist; create it or choose another file",
        str(tmp_path / "notes.png"): "exists and is not a PNG; xcr replaces only an earlier picture",
    }
    for plot, message in cases.items():
        r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out", "--plot", plot)
        assert r.code == 2 and message in one_error_line(r.err), (plot, r.err)
        assert not (tmp_path / "out").exists()
    assert (tmp_path / "notes.png").read_text() == "my notes, not a picture"
    assert json.loads((src / "config.json").read_text())["model_type"] == "clip"
    r = xcr("inspect", src, "--plot", src / "p.png")
    assert r.code == 2 and "is inside the checkpoint folder" in one_error_line(r.err)


def test_a_large_grid_shows_every_kth_tile() -> None:
    from xcomposer_resize.commands.plot import MAX_TILES, mosaic, stride

    g = 2 * MAX_TILES + 3  # 99: a tile for every 3rd cell each way
    table = torch.randn(1 + g * g, 8, generator=torch.Generator().manual_seed(0))
    k = stride(g)
    tiles = -(-g // k)
    m = mosaic(table, 1)
    assert k == 3 and m.shape == (tiles * (g + 1) - 1,) * 2
    assert m[0, 1 * (g + 1) + 3].item() == pytest.approx(1.0, abs=1e-5), "tile 1 is cell 3's"


def test_every_line_between_tiles_is_equally_wide(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    """Nothing is resampled: along a row of the picture, the tiles and the white lines between them
    come in runs of one width each (a resampled picture shows 1- and 2-pixel lines: false seams)."""
    from PIL import Image

    assert xcr("inspect", make_ckpt(table="smooth"), "--plot", tmp_path / "p.png").code == 0
    image = Image.open(tmp_path / "p.png").convert("RGB")
    row = [image.getpixel((x, 64)) for x in range(24, image.width)]  # the first pixel row of the panel
    runs: list[tuple[bool, int]] = []
    for pixel in row:
        white = pixel == (255, 255, 255)
        if runs and runs[-1][0] == white:
            runs[-1] = (white, runs[-1][1] + 1)
        else:
            runs.append((white, 1))
    tiles = [n for white, n in runs if not white][:24]
    lines = [n for white, n in runs if white][:23]
    assert len(tiles) == 24 and len(set(tiles)) == 1 and len(set(lines)) == 1, runs[:50]
    assert tiles[0] == 24 * lines[0], "a tile is 24 values, a line one value, at the same scale"


def test_the_readmes_picture_is_what_make_plot_demo_draws_and_draws_again(xcr: Any, tmp_path: Path) -> None:
    """docs/position-embeddings.png is current (the layout of today's code), and drawing it twice
    gives the same bytes. Pixels are compared with room for another FreeType's text rendering."""
    import numpy as np
    from PIL import Image

    repo = Path(__file__).resolve().parents[1]
    demo = repo / "demo" / "clip-vit-tiny-patch14-336"
    pictures = [tmp_path / "a.png", tmp_path / "b.png"]
    for picture in pictures:  # as make plot-demo draws it
        r = xcr("resize", "--model", demo, "--res", 490, "--out", tmp_path / "out", "--force", "--quiet",
                "--plot", picture)  # fmt: skip
        assert r.code == 0, r.err
    assert pictures[0].read_bytes() == pictures[1].read_bytes()
    drawn = np.asarray(Image.open(pictures[0]).convert("RGB"), dtype=np.int16)
    committed = np.asarray(Image.open(repo / "docs" / "position-embeddings.png").convert("RGB"), dtype=np.int16)
    assert committed.shape == drawn.shape, "docs/position-embeddings.png is stale: run make plot-demo"
    assert (np.abs(committed - drawn).max(axis=-1) > 8).mean() < 0.002, "stale: run make plot-demo"
