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


# timm's hub layout (timm/vit_base_patch16_224.augreg2_in21k_ft_in1k, at tiny width); `prefix`
# says which tokens have positions: "cls" (1 row), "none" (no_embed_class: 0 rows), "cls+reg4"
# (class token and 4 registers, all with positions: 5 rows)
TIMM_PREFIX = {"cls": 1, "none": 0, "cls+reg4": 5}


def build_timm(folder: Path, *, prefix: str = "cls", fmt: str = "safetensors", image_size: int = 224,
               patch_size: int = 16, model_args: bool = False, seed: int = 0, complete: bool = False) -> Path:  # fmt: skip
    """A timm hub checkpoint: config.json {architecture, num_classes, num_features, pretrained_cfg,
    (model_args)} and the state dict of timm's VisionTransformer, at width 32. `complete`: every
    tensor timm's model has, and model_args that build it at that width (embed_dim, depth, ...),
    so that timm itself loads it strictly (tests/test_real_libraries.py); "none" is then a model
    without a class token (global_pool avg), as SigLIP-style gap models are."""
    if complete:
        return _complete_timm(folder, prefix, fmt, image_size, patch_size, seed)
    g = torch.Generator().manual_seed(seed)
    width, grid = 32, image_size // patch_size
    rows = TIMM_PREFIX[prefix] + grid * grid
    sd: dict[str, torch.Tensor] = {}
    if prefix != "none":
        sd["cls_token"] = torch.randn(1, 1, width, generator=g)
    if prefix == "cls+reg4":
        sd["reg_token"] = torch.randn(1, 4, width, generator=g)
    sd["pos_embed"] = torch.randn(1, rows, width, generator=g)
    sd["patch_embed.proj.weight"] = torch.randn(width, 3, patch_size, patch_size, generator=g)
    sd["patch_embed.proj.bias"] = torch.randn(width, generator=g)
    for i in range(2):
        for name, shape in (("norm1.weight", (width,)), ("attn.qkv.weight", (3 * width, width)),
                            ("attn.proj.weight", (width, width)), ("mlp.fc1.weight", (64, width)),
                            ("mlp.fc2.weight", (width, 64))):  # fmt: skip
            sd[f"blocks.{i}.{name}"] = torch.randn(*shape, generator=g)
    sd["norm.weight"] = torch.ones(width)
    sd["head.weight"] = torch.randn(10, width, generator=g)
    sd["head.bias"] = torch.zeros(10)
    arch = f"vit_tiny_patch{patch_size}_{image_size}"
    config: dict[str, Any] = {
        "architecture": arch,
        "num_classes": 10,
        "num_features": width,
        "global_pool": "token",
        "pretrained_cfg": {
            "tag": "augreg_in21k_ft_in1k", "custom_load": False, "input_size": [3, image_size, image_size],
            "fixed_input_size": True, "interpolation": "bicubic", "crop_pct": 0.9, "crop_mode": "center",
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "num_classes": 10, "pool_size": None,
            "first_conv": "patch_embed.proj", "classifier": "head",
        },
    }  # fmt: skip
    if model_args:
        config["model_args"] = {"img_size": image_size, "no_embed_class": prefix == "none"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=4) + "\n")
    (folder / "README.md").write_text(
        "---\ntags:\n- image-classification\n- timm\nlibrary_name: timm\nlicense: apache-2.0\n---\n# a tiny timm ViT\n"
    )
    write_weights(folder, sd, fmt)
    return folder


def build_open_clip(folder: Path, *, fmt: str = "safetensors", image_size: int = 224, patch_size: int = 16,
                    seed: int = 0, trunk: str | None = None, complete: bool = False) -> Path:  # fmt: skip
    """open_clip's hub layout (laion/CLIP-ViT-B-16-laion2B-s34B-b88K without its transformers files):
    open_clip_config.json and open_clip_model.safetensors ("safetensors") or
    open_clip_pytorch_model.bin ("bin"), with open_clip's state-dict names at width 32. `trunk`
    builds the tower on a timm trunk instead: "siglip" (timm/ViT-SO400M-14-SigLIP-384: 384 px,
    14-px patches, no class token, a custom text tower under `text.`) or "clip" (a class token).
    `complete`: every tensor open_clip's model has, so that open_clip itself loads it strictly
    (tests/test_real_libraries.py); a trunk is then at its timm architecture's real width (open_clip
    3.3.0 cannot build it narrower): "siglip-base" (vit_base_patch16_siglip_224, 93M parameters)."""
    if complete:
        return _complete_open_clip(folder, fmt, image_size, patch_size, seed, trunk)
    if trunk is not None:
        return _open_clip_trunk(folder, trunk, fmt, seed)
    g = torch.Generator().manual_seed(seed)
    width, grid = 32, image_size // patch_size
    sd: dict[str, torch.Tensor] = {
        "positional_embedding": torch.randn(77, 16, generator=g),  # the text tower's: never touched
        "text_projection": torch.randn(16, 8, generator=g),
        "logit_scale": torch.tensor(4.6052),
        "token_embedding.weight": torch.randn(99, 16, generator=g),
        "ln_final.weight": torch.ones(16),
        "transformer.resblocks.0.attn.in_proj_weight": torch.randn(48, 16, generator=g),
        "visual.class_embedding": torch.randn(width, generator=g),
        "visual.positional_embedding": torch.randn(1 + grid * grid, width, generator=g),
        "visual.conv1.weight": torch.randn(width, 3, patch_size, patch_size, generator=g),
        "visual.ln_pre.weight": torch.ones(width),
        "visual.transformer.resblocks.0.attn.in_proj_weight": torch.randn(3 * width, width, generator=g),
        "visual.ln_post.weight": torch.ones(width),
        "visual.proj": torch.randn(width, 8, generator=g),
    }
    config = {
        "model_cfg": {
            "embed_dim": 8,
            "vision_cfg": {"image_size": image_size, "layers": 1, "width": width, "patch_size": patch_size},
            "text_cfg": {"context_length": 77, "vocab_size": 99, "width": 16, "heads": 2, "layers": 1},
        },
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
    }
    card = "---\nlicense: mit\nlibrary_name: open_clip\n---\n# a tiny open_clip ViT\n"
    return _write_open_clip(folder, config, card, sd, fmt)


def _write_open_clip(folder: Path, config: dict[str, Any], card: str, sd: dict[str, torch.Tensor], fmt: str) -> Path:
    """open_clip_config.json, README.md and the weights as open_clip's hub repos name them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "README.md").write_text(card)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(folder / "open_clip_model.safetensors"))
    elif fmt == "bin":
        torch.save(sd, folder / "open_clip_pytorch_model.bin")
    else:
        raise ValueError(fmt)
    return folder


# open_clip towers on timm trunks: (timm_model_name, image_size, patch_size, class token)
OPEN_CLIP_TRUNKS = {
    "siglip": ("vit_so400m_patch14_siglip_384", 384, 14, False),
    "clip": ("vit_base_patch16_clip_224", 224, 16, True),
    "siglip-base": ("vit_base_patch16_siglip_224", 224, 16, False),  # timm/ViT-B-16-SigLIP; complete only
}


def _open_clip_trunk(folder: Path, trunk: str, fmt: str, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    name, image_size, patch_size, cls = OPEN_CLIP_TRUNKS[trunk]
    width, grid = 32, image_size // patch_size
    sd: dict[str, torch.Tensor] = {
        "text.positional_embedding": torch.randn(64, 16, generator=g),  # the text tower's: never touched
        "text.token_embedding.weight": torch.randn(99, 16, generator=g),
        "text.ln_final.weight": torch.ones(16),
        "logit_scale": torch.tensor([4.6052]),
        "logit_bias": torch.tensor([-10.0]),
        "visual.trunk.pos_embed": torch.randn(1, int(cls) + grid * grid, width, generator=g),
        "visual.trunk.patch_embed.proj.weight": torch.randn(width, 3, patch_size, patch_size, generator=g),
        "visual.trunk.patch_embed.proj.bias": torch.randn(width, generator=g),
        "visual.trunk.blocks.0.attn.qkv.weight": torch.randn(3 * width, width, generator=g),
        "visual.trunk.norm.weight": torch.ones(width),
    }
    if cls:
        sd["visual.trunk.cls_token"] = torch.randn(1, 1, width, generator=g)
    else:
        sd["visual.trunk.attn_pool.latent"] = torch.randn(1, 1, width, generator=g)
    vision: dict[str, Any] = {"image_size": image_size, "timm_model_name": name, "timm_model_pretrained": False,
                              "timm_pool": "map" if not cls else "token", "timm_proj": "none"}  # fmt: skip
    config = {
        "model_cfg": {
            "embed_dim": width,
            "init_logit_bias": -10,
            "custom_text": True,
            "vision_cfg": vision,
            "text_cfg": {"context_length": 64, "vocab_size": 99, "width": 16, "heads": 2, "layers": 1},
        },
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic"},
    }
    card = "---\nlicense: apache-2.0\nlibrary_name: open_clip\n---\n# a tiny SigLIP\n"
    return _write_open_clip(folder, config, card, sd, fmt)


# ---------------------------------------------------------------- complete layouts, for the real libraries
# Every tensor timm's VisionTransformer and open_clip's CLIP hold, named and shaped as theirs (read from
# timm 1.0.31 and open_clip 3.3.0); random values, norms at one and zero.


def _weights(g: torch.Generator, **shapes: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """name → a tensor of `shape`: norm weights one, norm biases zero, the rest small random values."""
    out = {}
    for name, shape in shapes.items():
        key = name.replace("__", ".")
        owner = key.split(".")[-2] if "." in key else ""  # the module: norm1, ln_2, fc_norm, ...
        if owner.startswith(("norm", "ln_", "fc_norm")):
            out[key] = torch.ones(shape) if key.endswith("weight") else torch.zeros(shape)
        else:
            out[key] = torch.randn(*shape, generator=g) * 0.02
    return out


def _timm_vit(g: torch.Generator, width: int, depth: int, mlp: int, patch: int, rows: int, *, cls: bool,
              regs: int, pool: str, classes: int) -> dict[str, torch.Tensor]:  # fmt: skip
    """The state dict of timm's VisionTransformer (qkv bias, pre-norm blocks, `pool` head)."""
    sd: dict[str, torch.Tensor] = {}
    if cls:
        sd["cls_token"] = torch.randn(1, 1, width, generator=g)
    if regs:
        sd["reg_token"] = torch.randn(1, regs, width, generator=g)
    sd["pos_embed"] = torch.randn(1, rows, width, generator=g)  # unit scale: every interpolation weight matters
    sd.update(_weights(g, patch_embed__proj__weight=(width, 3, patch, patch), patch_embed__proj__bias=(width,)))
    for i in range(depth):
        sd.update({f"blocks.{i}.{k}": v for k, v in _weights(
            g, norm1__weight=(width,), norm1__bias=(width,), attn__qkv__weight=(3 * width, width),
            attn__qkv__bias=(3 * width,), attn__proj__weight=(width, width), attn__proj__bias=(width,),
            norm2__weight=(width,), norm2__bias=(width,), mlp__fc1__weight=(mlp, width), mlp__fc1__bias=(mlp,),
            mlp__fc2__weight=(width, mlp), mlp__fc2__bias=(width,)).items()})  # fmt: skip
    norm = "fc_norm" if pool == "avg" else "norm"  # timm norms after pooling for avg, before it otherwise
    sd.update({f"{norm}.weight": torch.ones(width), f"{norm}.bias": torch.zeros(width)})
    if pool == "map":
        sd.update({f"attn_pool.{k}": v for k, v in _weights(
            g, latent=(1, 1, width), q__weight=(width, width), q__bias=(width,), kv__weight=(2 * width, width),
            kv__bias=(2 * width,), proj__weight=(width, width), proj__bias=(width,), norm__weight=(width,),
            norm__bias=(width,), mlp__fc1__weight=(mlp, width), mlp__fc1__bias=(mlp,), mlp__fc2__weight=(width, mlp),
            mlp__fc2__bias=(width,)).items()})  # fmt: skip
    if classes:
        sd.update(_weights(g, head__weight=(classes, width), head__bias=(classes,)))
    return sd


def _complete_timm(folder: Path, prefix: str, fmt: str, image_size: int, patch_size: int, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    grid = image_size // patch_size
    cls, regs = prefix != "none", 4 if prefix == "cls+reg4" else 0
    pool = "token" if cls else "avg"
    sd = _timm_vit(g, 32, 2, 64, patch_size, TIMM_PREFIX[prefix] + grid * grid, cls=cls, regs=regs, pool=pool,
                   classes=10)  # fmt: skip
    build_timm(folder, prefix=prefix, fmt=fmt, image_size=image_size, patch_size=patch_size, model_args=True)
    config = json.loads((folder / "config.json").read_text())
    config["global_pool"] = pool
    config["model_args"] = {"img_size": image_size, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0,
                            "class_token": cls, "reg_tokens": regs, "global_pool": pool}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=4) + "\n")
    for old in folder.glob("model*.safetensors*"):
        old.unlink()
    for old in folder.glob("pytorch_model*.bin*"):
        old.unlink()
    write_weights(folder, sd, fmt)
    return folder


def _open_clip_block(g: torch.Generator, width: int) -> dict[str, torch.Tensor]:
    """open_clip's ResidualAttentionBlock (nn.MultiheadAttention, a 4× MLP)."""
    return _weights(
        g, ln_1__weight=(width,), ln_1__bias=(width,), attn__in_proj_weight=(3 * width, width),
        attn__in_proj_bias=(3 * width,), attn__out_proj__weight=(width, width), attn__out_proj__bias=(width,),
        ln_2__weight=(width,), ln_2__bias=(width,), mlp__c_fc__weight=(4 * width, width), mlp__c_fc__bias=(4 * width,),
        mlp__c_proj__weight=(width, 4 * width), mlp__c_proj__bias=(width,),
    )  # fmt: skip


# timm trunks a complete open_clip fixture can hold: architecture → (width, depth, MLP width)
REAL_TRUNKS = {"vit_base_patch16_siglip_224": (768, 12, 3072)}


def _complete_open_clip(folder: Path, fmt: str, image_size: int, patch_size: int, seed: int,
                        trunk: str | None) -> Path:  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    text = 16
    if trunk is None:
        width, grid, embed = 32, image_size // patch_size, 8
        sd = {
            "positional_embedding": torch.randn(77, text, generator=g),
            "text_projection": torch.randn(text, embed, generator=g) * 0.02,
            "logit_scale": torch.tensor(4.6052),
            "token_embedding.weight": torch.randn(99, text, generator=g) * 0.02,
            "ln_final.weight": torch.ones(text), "ln_final.bias": torch.zeros(text),
            **{f"transformer.resblocks.0.{k}": v for k, v in _open_clip_block(g, text).items()},
            "visual.class_embedding": torch.randn(width, generator=g),
            "visual.positional_embedding": torch.randn(1 + grid * grid, width, generator=g),
            "visual.proj": torch.randn(width, embed, generator=g) * 0.02,
            "visual.conv1.weight": torch.randn(width, 3, patch_size, patch_size, generator=g) * 0.02,
            "visual.ln_pre.weight": torch.ones(width), "visual.ln_pre.bias": torch.zeros(width),
            **{f"visual.transformer.resblocks.0.{k}": v for k, v in _open_clip_block(g, width).items()},
            "visual.ln_post.weight": torch.ones(width), "visual.ln_post.bias": torch.zeros(width),
        }  # fmt: skip
        build_open_clip(folder, fmt=fmt, image_size=image_size, patch_size=patch_size)
        config = json.loads((folder / "open_clip_config.json").read_text())
        config["model_cfg"]["vision_cfg"]["head_width"] = 16  # 2 heads at width 32 (the default 64 makes none)
    else:
        name, image_size, patch_size, cls = OPEN_CLIP_TRUNKS[trunk]
        width, depth, mlp = REAL_TRUNKS[name]
        grid = image_size // patch_size
        sd = {
            "logit_scale": torch.tensor(4.6052), "logit_bias": torch.tensor(-10.0),
            "text.positional_embedding": torch.randn(16, text, generator=g),
            "text.token_embedding.weight": torch.randn(99, text, generator=g) * 0.02,
            **{f"text.transformer.resblocks.0.{k}": v for k, v in _open_clip_block(g, text).items()},
            "text.ln_final.weight": torch.ones(text), "text.ln_final.bias": torch.zeros(text),
            "text.text_projection.weight": torch.randn(width, text, generator=g) * 0.02,
            "text.text_projection.bias": torch.zeros(width),
        }  # fmt: skip
        vit = _timm_vit(g, width, depth, mlp, patch_size, int(cls) + grid * grid, cls=cls, regs=0,
                        pool="token" if cls else "map", classes=0)  # fmt: skip
        sd.update({f"visual.trunk.{k}": v for k, v in vit.items()})
        _open_clip_trunk(folder, trunk, fmt, seed)
        config = json.loads((folder / "open_clip_config.json").read_text())
        config["model_cfg"]["embed_dim"] = width  # timm_proj none: the trunk's features are the embedding
        config["model_cfg"]["text_cfg"] = {"context_length": 16, "vocab_size": 99, "width": text, "heads": 2,
                                           "layers": 1, "no_causal_mask": True, "proj_bias": True, "pool_type": "last"}  # fmt: skip
    for old in folder.glob("open_clip_*"):
        old.unlink()
    card = (folder / "README.md").read_text()
    return _write_open_clip(folder, config, card, sd, fmt)
