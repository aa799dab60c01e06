"""resize_model: the same resize inside a training script, checked against the command's output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.test_convert import POS, tensors
from xcomposer_resize import XcrError, resize, resize_model


@pytest.mark.parametrize(
    ("kind", "cls_name"),
    [("full", "CLIPModel"), ("vision", "CLIPVisionModel"), ("vision-proj", "CLIPVisionModelWithProjection")],
)
def test_in_process_equals_the_command_and_saves_what_it_writes(
    make_ckpt: Any, tmp_path: Path, kind: str, cls_name: str
) -> None:
    import transformers

    src = make_ckpt(kind=kind, naming="v4")
    resize(src, 490, tmp_path / "cmd")
    model = resize_model(getattr(transformers, cls_name).from_pretrained(src), 490)
    with torch.no_grad():
        out = model(pixel_values=torch.randn(1, 3, 490, 490)) if kind != "full" else None
    assert kind == "full" or out is not None  # runs at 490 without interpolate_pos_encoding
    model.save_pretrained(tmp_path / "saved")
    cmd, saved = tensors(tmp_path / "cmd"), tensors(tmp_path / "saved")
    shared = set(saved) & set(cmd)
    assert any(n.endswith("position_embedding.weight") for n in shared)
    for name in shared:
        assert torch.equal(saved[name], cmd[name]), name
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    size = config["vision_config"]["image_size"] if kind == "full" else config["image_size"]
    assert size == 490


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_models_are_resampled_in_float32(make_ckpt: Any, tmp_path: Path, dtype: torch.dtype) -> None:
    from transformers import CLIPVisionModel

    src = make_ckpt(kind="vision", dtype=dtype)
    resize(src, 224, tmp_path / "cmd")
    model = resize_model(CLIPVisionModel.from_pretrained(src, dtype=dtype), 224)
    emb = model.vision_model.embeddings if hasattr(model, "vision_model") else model.embeddings
    assert emb.position_embedding.weight.dtype == dtype
    assert torch.equal(emb.position_embedding.weight.detach(), tensors(tmp_path / "cmd")[POS])
    assert emb.position_embedding.weight.requires_grad
    assert emb.image_size == 224 and emb.num_positions == 1 + 16 * 16 and emb.position_ids.shape == (1, 257)


def test_the_same_grid_changes_nothing_and_bad_sizes_are_refused(make_ckpt: Any) -> None:
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(make_ckpt())
    before = model.vision_model.embeddings.position_embedding
    assert resize_model(model, 336) is model and model.vision_model.embeddings.position_embedding is before
    with pytest.raises(XcrError) as e:
        resize_model(model, 5)
    assert str(e.value) == "res=5 is smaller than one 14-px patch; use at least 14"
    with pytest.raises(XcrError) as e:
        resize_model(model, True)  # type: ignore[arg-type]
    assert str(e.value) == "res must be a whole number of pixels, not True"
    with pytest.raises(XcrError):
        resize_model(torch.nn.Linear(2, 2), 490)
