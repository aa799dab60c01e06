"""Tiny CLIP checkpoints with the real openai/clip-vit-large-patch14-336 layout, built in tmp_path.

Weights come from transformers' own CLIP classes (the oracle), at tiny width: a 24×24 grid of
14-px patches (336 px) plus the class token, legacy `vision_config_dict`, int preprocessor
sizes, int64 `position_ids` buffers saved as `arange(n).expand((1, -1))`, tokenizer files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "projection_dim": 8,
}
TEXT = {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1, "projection_dim": 8,
        "vocab_size": 99, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}  # fmt: skip
TOKENIZER_FILES = {
    "vocab.json": json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}) + "\n",
    "merges.txt": "#version: 0.2\n",
    "tokenizer_config.json": json.dumps({"model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}) + "\n",
    "special_tokens_map.json": json.dumps({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>"}) + "\n",
    ".gitattributes": "*.bin filter=lfs diff=lfs merge=lfs -text\n",
    "README.md": "---\nlicense: mit\n---\n# a tiny CLIP\n",
}


def openai_config(image_size: int = 336, patch_size: int = 14, kind: str = "full") -> dict[str, Any]:
    """config.json as openai/clip-vit-large-patch14-336 has it, at tiny width."""
    vision = {
        "_name_or_path": "", "architectures": None, "attention_dropout": 0.0, "dropout": 0.0,
        "hidden_act": "quick_gelu", **VISION, "image_size": image_size, "initializer_factor": 1.0,
        "initializer_range": 0.02, "layer_norm_eps": 1e-05, "model_type": "clip_vision_model",
        "num_channels": 3, "patch_size": patch_size, "torch_dtype": None,
    }  # fmt: skip
    if kind != "full":
        arch = "CLIPVisionModel" if kind == "vision" else "CLIPVisionModelWithProjection"
        return {
            **{k: v for k, v in vision.items() if k != "_name_or_path"},
            "architectures": [arch],
            "torch_dtype": "float32",
        }
    text = {
        "_name_or_path": "", "architectures": None, "attention_dropout": 0.0, "dropout": 0.0,
        "hidden_act": "quick_gelu", **TEXT, "initializer_factor": 1.0, "initializer_range": 0.02,
        "layer_norm_eps": 1e-05, "model_type": "clip_text_model", "torch_dtype": None,
    }  # fmt: skip
    return {
        "_name_or_path": "openai/clip-vit-large-patch14-336",
        "architectures": ["CLIPModel"],
        "initializer_factor": 1.0,
        "logit_scale_init_value": 2.6592,
        "model_type": "clip",
        "projection_dim": 8,
        "text_config": text,
        "text_config_dict": {
            k: TEXT[k]
            for k in (
                "hidden_size",
                "intermediate_size",
                "num_attention_heads",
                "num_hidden_layers",
                "projection_dim",
                "vocab_size",
            )
        },
        "torch_dtype": "float32",
        "transformers_version": None,
        "vision_config": vision,
        "vision_config_dict": {**VISION, "image_size": image_size, "patch_size": patch_size},
    }


def preprocessor_config(size: Any = 336, crop: Any = 336) -> dict[str, Any]:
    return {
        "crop_size": crop, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": size,
    }  # fmt: skip


def smooth_table(grid: int, width: int, seed: int = 0) -> torch.Tensor:
    """[1 + grid², width]: a class row and grid rows whose similarity falls off with distance, as in
    a learned table (the best rank-`width` fit of a Gaussian kernel over the grid, a little noise):
    a table with structure, for pictures of it."""
    ys, xs = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij"
    )
    cells = torch.stack([ys.reshape(-1), xs.reshape(-1)], dim=1)
    kernel = torch.exp(-(torch.cdist(cells, cells) ** 2) / (2 * (grid / 5) ** 2))
    values, vectors = torch.linalg.eigh(kernel)  # ascending
    rows = vectors[:, -width:] * values[-width:].clamp(min=0).sqrt()
    rows = torch.cat([rows, torch.zeros(grid * grid, width - rows.shape[1], dtype=torch.float64)], dim=1)
    noise = torch.randn(1 + grid * grid, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (torch.cat([torch.zeros(1, width, dtype=torch.float64), rows]) + 0.02 * noise).float()


def state_dict(kind: str = "full", naming: str = "v4", image_size: int = 336, patch_size: int = 14,
               position_ids: bool = True, seed: int = 0, table: str = "random") -> dict[str, torch.Tensor]:  # fmt: skip
    """Weights of a tiny CLIPModel / CLIPVisionModel(WithProjection) made by transformers.

    naming: "v4" keeps `vision_model.` on vision-only keys (transformers 4.x), "v5" drops it.
    """
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    vision = dict(VISION, image_size=image_size, patch_size=patch_size)
    n = (image_size // patch_size) ** 2 + 1
    if kind == "full":
        model = CLIPModel(CLIPConfig(text_config=TEXT, vision_config=vision, projection_dim=8))
        sd = dict(model.state_dict())
        if position_ids:
            sd["vision_model.embeddings.position_ids"] = torch.arange(n).expand((1, -1))
            sd["text_model.embeddings.position_ids"] = torch.arange(TEXT["max_position_embeddings"]).expand((1, -1))
    else:
        cls = CLIPVisionModel if kind == "vision" else CLIPVisionModelWithProjection
        model = cls(CLIPVisionConfig(**vision))
        sd = {}
        for k, v in model.state_dict().items():
            bare = k.removeprefix("vision_model.")
            top_level = bare.startswith("visual_projection.")
            sd[bare if naming == "v5" or top_level else "vision_model." + bare] = v
        if position_ids:
            sd[("" if naming == "v5" else "vision_model.") + "embeddings.position_ids"] = torch.arange(n).expand(
                (1, -1)
            )
    # randomise the position table so that every interpolation weight matters (or give it structure)
    pos = next(k for k in sd if k.endswith("embeddings.position_embedding.weight") and not k.startswith("text_model."))
    grid = image_size // patch_size
    sd[pos] = torch.randn_like(sd[pos]) if table == "random" else smooth_table(grid, sd[pos].shape[1], seed)
    return {k: v.contiguous() if k.endswith("position_ids") is False else v for k, v in sd.items()}


def build(folder: Path, *, fmt: str = "safetensors", dtype: torch.dtype = torch.float32, kind: str = "full",
          naming: str = "v4", image_size: int = 336, patch_size: int = 14, position_ids: bool = True,
          preprocessor: dict[str, Any] | None = None, extra_files: dict[str, bytes] | None = None,
          seed: int = 0, table: str = "random") -> Path:  # fmt: skip
    """Write a checkpoint folder. fmt: safetensors | sharded | bin | bin-sharded; table: random | smooth."""

    folder.mkdir(parents=True, exist_ok=True)
    sd = state_dict(kind, naming, image_size, patch_size, position_ids, seed, table)
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}
    (folder / "config.json").write_text(json.dumps(openai_config(image_size, patch_size, kind), indent=2) + "\n")
    pre = preprocessor if preprocessor is not None else preprocessor_config(image_size, image_size)
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    for name, text in TOKENIZER_FILES.items():
        (folder / name).write_text(text)
    for name, data in (extra_files or {}).items():
        (folder / name).write_bytes(data)
    write_weights(folder, sd, fmt)
    return folder


def build_saved(folder: Path, *, kind: str = "full", processor_form: str = "v5", seed: int = 0) -> Path:
    """A checkpoint as the newest transformers writes it: `save_pretrained` of the model (config.json
    with `dtype`, no legacy `*_config_dict`, model.safetensors) and of its processor.

    processor_form: "v5" — CLIPProcessor.save_pretrained: processor_config.json with a nested
    `image_processor` block and no preprocessor_config.json; "both" — that plus the image
    processor's own preprocessor_config.json, as a repo updated across versions has.
    """
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModel,
    )

    torch.manual_seed(seed)
    vision = dict(VISION, image_size=336, patch_size=14)
    if kind == "full":
        model: Any = CLIPModel(CLIPConfig(text_config=TEXT, vision_config=vision, projection_dim=8))
    else:
        model = CLIPVisionModel(CLIPVisionConfig(**vision))
    with torch.no_grad():  # every interpolation weight matters
        for name, p in model.named_parameters():
            if name.endswith("embeddings.position_embedding.weight") and not name.startswith("text_model."):
                p.normal_()
    model.save_pretrained(folder)
    vocab = folder / "_vocab"
    vocab.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (vocab / name).write_text(TOKENIZER_FILES[name])
    tokenizer = CLIPTokenizer(str(vocab / "vocab.json"), str(vocab / "merges.txt"))
    image_processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    for p in vocab.iterdir():
        p.unlink()
    vocab.rmdir()
    if processor_form == "both":
        image_processor.save_pretrained(folder)
    return folder


def write_weights(folder: Path, sd: dict[str, torch.Tensor], fmt: str) -> None:
    """Write `sd` into `folder` as fmt: safetensors | sharded | bin | bin-sharded (three shards)."""
    from safetensors.torch import save_file

    contiguous = {k: v.contiguous() for k, v in sd.items()}
    if fmt == "safetensors":
        save_file(contiguous, str(folder / "model.safetensors"), metadata={"format": "pt"})
    elif fmt == "bin":
        torch.save(sd, folder / "pytorch_model.bin")
    elif fmt in ("sharded", "bin-sharded"):
        names = sorted(sd)
        parts = [names[: len(names) // 3], names[len(names) // 3 : 2 * len(names) // 3], names[2 * len(names) // 3 :]]
        ext, stem = (".safetensors", "model") if fmt == "sharded" else (".bin", "pytorch_model")
        weight_map = {}
        for i, part in enumerate(parts, 1):
            shard = f"{stem}-{i:05d}-of-{len(parts):05d}{ext}"
            if fmt == "sharded":
                save_file({k: contiguous[k] for k in part}, str(folder / shard), metadata={"format": "pt"})
            else:
                torch.save({k: sd[k] for k in part}, folder / shard)
            weight_map.update({k: shard for k in part})
        total = sum(v.numel() * v.element_size() for v in sd.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / f"{stem}{ext}.index.json").write_text(json.dumps(index, indent=2) + "\n")
    else:
        raise ValueError(fmt)
