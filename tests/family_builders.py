"""Tiny checkpoints of the other ViT families, as transformers' own `save_pretrained` writes them.

Each is made by the family's transformers classes (the oracle) at tiny width, with the real
layout: SigLIP (full and vision-only; no class token; a 384-px, 14-px-patch so400m-like tower whose
27×27 grid leaves 6 px uncovered), DINOv2 and DINOv2 with registers ([1, 1+N, C] tables, resize 256 /
crop 224 processors), ViT (an image classifier). Weights are rewritten in the asked format (safetensors, bin, sharded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tests.builders import write_weights

WIDTH = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2}

# family → (image_size, patch_size) of the tiny source, as its real checkpoints have them
SIZES = {
    "siglip": (384, 14),  # google/siglip-so400m-patch14-384
    "siglip-vision": (384, 14),
    "dinov2": (224, 14),  # facebook/dinov2-base's processor crops 224 (its config says 518)
    "dinov2-registers": (224, 14),
    "vit": (224, 16),  # google/vit-base-patch16-224
}
FAMILIES = tuple(SIZES)


def model_and_processor(family: str, image_size: int, patch_size: int) -> tuple[Any, Any]:
    """A tiny randomly initialised model of `family` and the image processor its hub repos ship."""
    import transformers as t

    vision = dict(WIDTH, image_size=image_size, patch_size=patch_size)
    square = {"height": image_size, "width": image_size}
    if family in ("siglip", "siglip-vision"):
        processor = t.SiglipImageProcessor(size=square)
        if family == "siglip-vision":
            return t.SiglipVisionModel(t.SiglipVisionConfig(**vision)), processor
        text = dict(WIDTH, vocab_size=99, max_position_embeddings=16)
        return t.SiglipModel(t.SiglipConfig(text_config=text, vision_config=vision)), processor
    if family in ("dinov2", "dinov2-registers"):
        crop = {"height": image_size, "width": image_size}
        processor = t.BitImageProcessor(size={"shortest_edge": image_size * 256 // 224}, crop_size=crop)
        if family == "dinov2":
            return t.Dinov2Model(t.Dinov2Config(**vision)), processor
        config = t.Dinov2WithRegistersConfig(**vision, num_register_tokens=4)
        return t.Dinov2WithRegistersModel(config), processor
    if family == "vit":
        # google/vit-base-patch16-224 is an image classifier: its tower's names start with vit.
        return t.ViTForImageClassification(t.ViTConfig(**vision, num_labels=3)), t.ViTImageProcessor(size=square)
    raise ValueError(family)


def build_family(folder: Path, family: str, *, fmt: str = "safetensors", seed: int = 0,
                 image_size: int | None = None, omit_image_size: bool = False) -> Path:  # fmt: skip
    """Write a `family` checkpoint into `folder` (see the module doc); `omit_image_size` drops the
    vision image_size from config.json, as google/siglip-base-patch16-224's config does."""
    torch.manual_seed(seed)
    size, patch = SIZES[family]
    size = image_size or size
    model, processor = model_and_processor(family, size, patch)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    for name in sd:  # a random table: every interpolation weight matters
        if name.endswith(("embeddings.position_embedding.weight", "embeddings.position_embeddings")):
            if not name.startswith("text_model."):
                sd[name] = torch.randn_like(sd[name])
    for old in folder.glob("model*.safetensors*"):
        old.unlink()
    write_weights(folder, sd, fmt)
    if omit_image_size:
        config = json.loads((folder / "config.json").read_text())
        block = config.get("vision_config", config)
        del block["image_size"]
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
