"""xcr verify's figures against transformers computed here, and its forward check shown to fail.

Only the public face is used (`xcomposer_resize.verify` and `xcr verify`): how verify computes is
its own business; what it reports must agree with transformers run by the test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.test_cli import one_error_line
from tests.test_convert import POS, load
from xcomposer_resize import resize, verify


def embedding(folder: Path, image: Any) -> torch.Tensor:
    """CLIP's image embedding of `image` by the checkpoint in `folder`, through its own image
    processor: the projected pooled output of the vision tower (CLIP's definition), in float32."""
    from transformers import AutoImageProcessor

    model = load(folder)
    pixels = AutoImageProcessor.from_pretrained(folder)(images=image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        pooled = model.vision_model(pixel_values=pixels).pooler_output
        return model.visual_projection(pooled)[0]


def test_drift_is_the_cosine_transformers_gives(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    """Each image's drift is the cosine similarity of the source's embedding at 336 px (its
    processor) and the output's at 490 px (its processor): computed here with transformers."""
    from PIL import Image

    src = make_ckpt(table="smooth")
    out = tmp_path / "out"
    resize(src, 490, out)
    images = tmp_path / "images"
    images.mkdir()
    g = torch.Generator().manual_seed(0)
    for name, (w, h) in {"wide.png": (400, 260), "tall.png": (230, 330)}.items():
        pixels = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(images / name)

    want = {}
    for path in sorted(images.iterdir()):
        image = Image.open(path).convert("RGB")
        a, b = embedding(src, image), embedding(out, image)
        want[path.name] = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
    assert all(c < 0.9999 for c in want.values()), f"the resize must move these embeddings measurably: {want}"
    assert abs(want["wide.png"] - want["tall.png"]) > 1e-4, "two images that tell each other apart"

    r = xcr("verify", out, "--against", src, "--images", images, "--json")
    assert r.code == 0, r.err
    drift = json.loads(r.out)["drift"]
    assert drift["images"] == 2
    assert drift["mean"] == pytest.approx(sum(want.values()) / 2, abs=1e-6)
    assert drift["min"] == pytest.approx(min(want.values()), abs=1e-6)
    assert [w["file"] for w in drift["worst"]] == sorted(want, key=want.__getitem__)
    for w in drift["worst"]:
        assert w["cosine"] == pytest.approx(want[w["file"]], abs=1e-6), w


def damage_table(out: Path, how: str) -> None:
    """Rewrite the output's position table in place (a valid file; every other tensor as it was)."""
    from safetensors.torch import load_file, save_file

    path = out / "model.safetensors"
    sd = load_file(str(path))
    table = sd[POS]
    if how == "one row doubled":
        table = table.clone()
        table[100] *= 2
    else:  # "random": no longer a resample of anything
        table = torch.randn(table.shape, generator=torch.Generator().manual_seed(1)).to(table.dtype)
    sd[POS] = table
    save_file(sd, str(path), metadata={"format": "pt"})


@pytest.mark.parametrize(
    ("dtype", "how"),
    [("float32", "one row doubled"), ("float16", "random")],  # float32: exact; float16: the cosine bound
)
def test_the_forward_check_fails_on_a_damaged_table(
    xcr: Any, make_ckpt: Any, tmp_path: Path, dtype: str, how: str
) -> None:
    src = make_ckpt()
    out = tmp_path / "out"
    resize(src, 490, out, dtype=dtype)
    assert verify(out, src).ok, "the undamaged output passes"
    damage_table(out, how)

    found = verify(out, src)
    by = {c.check: c for c in found.checks}
    assert by["load"].ok is False, by["load"]
    assert "forward pass" in by["load"].detail, by["load"].detail
    assert found.failed == ["table", "load"], found.checks
    assert all(by[name].ok for name in ("files", "tensors", "configs")), "the damage is the table's alone"

    r = xcr("verify", out, "--against", src, "--json")
    assert r.code == 1
    assert {c["check"]: c["ok"] for c in json.loads(r.out)["checks"]}["load"] is False
    assert one_error_line(r.err).endswith("table, load"), r.err
