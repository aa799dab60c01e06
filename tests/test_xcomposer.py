"""The README's claim that the table equals InternLM-XComposer's `resize_pos`, bit for bit, proven
against that function's logic rather than against xcr's own code or transformers'."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.test_convert import IDS, POS, tensors


def xcomposer_resize_pos(vision_tower: Any, new_size: int, orig_size: int = 24) -> None:
    """`CLIPVisionTower.resize_pos` of InternLM-XComposer2, rewritten in this project's style.

    The logic comes from build_mlp.py of internlm/internlm-xcomposer2-vl-7b (new_size 35, 490 px) and
    internlm/internlm-xcomposer2-7b (new_size 16, 224 px) on the Hugging Face Hub, where it runs on
    the CLIPVisionModel loaded from openai/clip-vit-large-patch14-336 (orig_size 24). The one change:
    the public code builds `nn.Embedding(new_num, 1024)` for CLIP-L; the width is read from the table
    here, as the tiny test tower is 32 wide (and the embeddings are found where transformers 5 puts
    them too: its CLIPVisionModel has no `vision_model` level). Nothing else is adapted: the sizes are
    the hard-coded ones, the interpolation runs in the tower's dtype, and the config is never touched.
    """
    embeddings = getattr(vision_tower, "vision_model", vision_tower).embeddings
    table = embeddings.position_embedding.weight.unsqueeze(0)  # [1, 1 + 24*24, C]
    if table.shape[1] == new_size**2 + 1:
        return  # already resized: XComposer leaves it as it is
    width = table.shape[-1]
    extra = 1  # the class token's row is kept, never interpolated
    new_num = new_size**2 + extra
    extra_tokens = table[:, :extra]
    pos_tokens = table[:, extra:].reshape(-1, orig_size, orig_size, width).permute(0, 3, 1, 2)
    pos_tokens = torch.nn.functional.interpolate(
        pos_tokens, size=(new_size, new_size), mode="bicubic", align_corners=False
    )
    pos_tokens = pos_tokens.permute(0, 2, 3, 1).flatten(1, 2)
    new_table = torch.cat((extra_tokens, pos_tokens), dim=1).squeeze(0)
    embeddings.position_embedding = torch.nn.Embedding(new_num, width)
    embeddings.position_embedding.weight = torch.nn.Parameter(new_table.to(table.dtype))
    embeddings.position_ids = torch.arange(new_num).expand((1, -1))


@pytest.mark.parametrize(("res", "new_size"), [(224, 16), (490, 35)])
def test_xcr_resize_equals_xcomposers_resize_pos(
    xcr: Any, make_ckpt: Any, tmp_path: Path, res: int, new_size: int
) -> None:
    """internlm-xcomposer2-7b (224 px) and internlm-xcomposer2-vl-7b (490 px), in float32: the table
    and the position ids xcr writes are what XComposer computes at load time, exactly."""
    from transformers import CLIPVisionModel

    src = make_ckpt(fmt="bin")  # the default source's layout: pytorch_model.bin with position_ids buffers
    r = xcr("resize", "--model", src, "--res", res, "--out", tmp_path / "out", "--quiet")
    assert r.code == 0, r.err

    tower = CLIPVisionModel.from_pretrained(src)  # what XComposer's CLIPVisionTower.load_model does
    assert tower.dtype == torch.float32
    with torch.no_grad():
        xcomposer_resize_pos(tower, new_size)
    embeddings = getattr(tower, "vision_model", tower).embeddings
    want_table = embeddings.position_embedding.weight.detach()
    want_ids = embeddings.position_ids

    got = tensors(tmp_path / "out")  # read with the safetensors library, not xcr's reader
    assert got[POS].shape == want_table.shape == (1 + new_size**2, 32)
    assert got[POS].dtype == want_table.dtype
    assert torch.equal(got[POS], want_table)
    assert got[IDS].dtype == want_ids.dtype == torch.int64
    assert got[IDS].shape == want_ids.shape == (1, 1 + new_size**2)
    assert torch.equal(got[IDS], want_ids)
