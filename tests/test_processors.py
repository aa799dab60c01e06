"""Every family's processor files, in the form its real hub repos ship, judged by transformers'
AutoImageProcessor on a non-square photo: the output makes images of the new size, pads nothing,
and shows the same share of the photo as the source's processor did."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.builders import build, build_saved
from tests.family_builders import build_family
from xcomposer_resize import resize
from xcomposer_resize.size import Size

PHOTO = (640, 480)  # width, height: a landscape photo, so a shortest-edge resize and a crop both show
LOW, SPAN = 30, 200  # channel values run LOW .. LOW + SPAN: no pixel of the photo is black


def photo() -> Any:
    """Red encodes the column, green the row: the processed pixels say which part of the photo they show."""
    from PIL import Image

    w, h = PHOTO
    x = torch.linspace(LOW, LOW + SPAN, w).round().to(torch.uint8).expand(h, w)
    y = torch.linspace(LOW, LOW + SPAN, h).round().to(torch.uint8)[:, None].expand(h, w)
    rgb = torch.stack([x, y, torch.full((h, w), 120, dtype=torch.uint8)], dim=-1)
    return Image.fromarray(rgb.numpy(), "RGB")


def seen(folder: Path) -> tuple[tuple[int, int], float, tuple[float, float]]:
    """What the folder's image processor makes of the photo: (height, width) in pixels, the share
    of its pixels that are padding, and the share of the photo's width and height it shows."""
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(folder)
    pixels = processor(images=photo(), return_tensors="pt")["pixel_values"][0]
    mean = torch.tensor(processor.image_mean)[:, None, None]
    std = torch.tensor(processor.image_std)[:, None, None]
    scale = getattr(processor, "rescale_factor", 1 / 255) if getattr(processor, "do_rescale", True) else 1.0
    values = (pixels * std + mean) / scale  # back to 0..255
    padding = (values.abs() < 1).all(dim=0).float().mean().item()  # black: no photo pixel is
    shown = values[:, values[1].mean(dim=1) > LOW / 2][:, :, values[0].mean(dim=0) > LOW / 2]
    red, green = shown[0], shown[1]
    share_x = (red.max() - red.min()).item() / SPAN
    share_y = (green.max() - green.min()).item() / SPAN
    return tuple(pixels.shape[-2:]), padding, (share_x, share_y)  # type: ignore[return-value]


def real_dinov2(folder: Path, family: str) -> Path:
    """facebook/dinov2-base's layout: config.json says 518 px (a 37×37 table), its processor resizes
    the shortest edge to 256 and crops 224."""
    build_family(folder, family, image_size=518)
    data = json.loads((folder / "preprocessor_config.json").read_text())
    data.update(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224})
    (folder / "preprocessor_config.json").write_text(json.dumps(data, indent=2))
    return folder


def vit_feature_extractor(folder: Path) -> Path:
    """google/vit-base-patch16-224's legacy processor file: `size: 224`, one number meaning a square."""
    build_family(folder, "vit")
    data = {
        "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 224,
    }  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(data, indent=2))
    return folder


SOURCES: dict[str, Callable[[Path], Path]] = {
    "clip-openai": lambda f: build(f),  # int size and crop_size 336
    "clip-transformers-5": lambda f: build_saved(f, processor_form="both"),  # nested processor_config.json too
    "siglip": lambda f: build_family(f, "siglip"),  # {height, width}, no crop
    "dinov2": lambda f: real_dinov2(f, "dinov2"),
    "dinov2-registers": lambda f: real_dinov2(f, "dinov2-registers"),
    "vit": lambda f: build_family(f, "vit"),
    "vit-feature-extractor": vit_feature_extractor,
}
CASES = [(name, res) for name in SOURCES for res in ("448",)] + [
    ("vit", "448x672"),
    ("vit-feature-extractor", "448x672"),
]


@pytest.mark.parametrize(("source", "res"), CASES)
def test_the_processor_makes_the_new_size_pads_nothing_and_shows_what_the_source_showed(
    tmp_path: Path, source: str, res: str
) -> None:
    src = SOURCES[source](tmp_path / "src")
    size = Size.parse(res)
    assert size is not None
    resize(src, size, tmp_path / "out")
    old_pixels, old_padding, old_share = seen(src)
    pixels, padding, share = seen(tmp_path / "out")
    assert pixels == size.sides
    assert old_padding == 0 and padding == 0
    assert share == pytest.approx(old_share, abs=0.01), (old_share, share)


def test_dinov2s_resize_keeps_its_relation_to_its_own_crop(tmp_path: Path) -> None:
    """The processor's resize is scaled with its crop (256/224 → 512/448), not with config.json's 518."""
    src = real_dinov2(tmp_path / "src", "dinov2")
    resize(src, 448, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert data["size"] == {"shortest_edge": 512} and data["crop_size"] == {"height": 448, "width": 448}
    assert json.loads((tmp_path / "out" / "config.json").read_text())["image_size"] == 448
