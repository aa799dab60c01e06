"""`make demo`'s proof: the resized demo loads and runs as the model card says.

    python -m tests.check_demo SOURCE OUTPUT

With transformers as the judge: OUTPUT loads as CLIPModel and as CLIPVisionModel with no missing,
unexpected or mismatched keys; its image processor and processor (read the way transformers reads
them) make pixel tensors of the new size; and its image features at that size equal the source's
with `interpolate_pos_encoding=True`, bit for bit. Exits 1 naming the first thing that fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _loaded(cls: Any, folder: Path, expect_unexpected: bool = False) -> Any:
    import torch

    model, info = cls.from_pretrained(folder, output_loading_info=True)
    problems = {
        k: v for k, v in info.items() if v and k != "error_msgs" and not (expect_unexpected and k == "unexpected_keys")
    }
    if problems:
        raise SystemExit(f"{folder}: {cls.__name__} loads with {problems}")
    with torch.no_grad():  # fresh memory: BLAS rounds unaligned, memory-mapped weights differently
        for p in list(model.parameters()) + list(model.buffers()):
            p.data = p.data.clone()
    return model.eval()


def check(source: Path, output: Path) -> str:
    import torch
    import transformers
    from PIL import Image
    from transformers import AutoImageProcessor, AutoProcessor, CLIPModel, CLIPVisionModel

    transformers.logging.set_verbosity_error()  # CLIPVisionModel's report of the text tower it skips
    transformers.logging.disable_progress_bar()

    config = json.loads((output / "config.json").read_text())
    res = config["vision_config"]["image_size"]
    image = Image.new("RGB", (640, 480), (200, 100, 50))
    for loader in (AutoImageProcessor, AutoProcessor):
        pixels = loader.from_pretrained(output)(images=image, return_tensors="pt")["pixel_values"]
        if tuple(pixels.shape[-2:]) != (res, res):
            raise SystemExit(f"{output}: {loader.__name__} makes {tuple(pixels.shape[-2:])} pixels, not {res}×{res}")

    torch.manual_seed(0)
    pixels = torch.randn(2, 3, res, res)
    new, old = _loaded(CLIPModel, output), _loaded(CLIPModel, source)
    with torch.no_grad():
        got = new.get_image_features(pixel_values=pixels)
        want = old.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True)
    got = got if isinstance(got, torch.Tensor) else got.pooler_output
    want = want if isinstance(want, torch.Tensor) else want.pooler_output
    if not torch.equal(got, want):
        raise SystemExit(f"{output}: image features differ from the source's by {(got - want).abs().max():.3g}")
    vision = _loaded(CLIPVisionModel, output, expect_unexpected=True)  # the text tower is not its
    with torch.no_grad():
        vision(pixel_values=pixels)
    return (
        f"{output}: loads as CLIPModel and CLIPVisionModel at {res} px; its processors make {res}×{res} pixels; "
        f"its image features equal the source's with interpolate_pos_encoding=True"
    )


if __name__ == "__main__":
    print(check(Path(sys.argv[1]), Path(sys.argv[2])))
