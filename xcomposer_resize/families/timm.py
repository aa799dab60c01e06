"""timm's hub layout, and what timm's architecture names say (open_clip builds its trunks from them)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..size import Size
from .base import Family


@dataclass(frozen=True)
class TimmFamily(Family):
    """timm's hub layout: config.json = {architecture, num_classes, num_features, pretrained_cfg
    {input_size [3, H, W], fixed_input_size, ...}, model_args {...}}. timm builds the model from
    `architecture` and `model_args` (its img_size defaulting to pretrained_cfg.input_size when
    fixed_input_size), then resamples a checkpoint's pos_embed to the model's grid on load: both
    sizes must say the new one. The prefix rows (class token, registers; none with no_embed_class)
    are what the table holds beyond the grid."""

    def matches(self, config: dict[str, Any]) -> bool:
        return isinstance(config.get("architecture"), str) and isinstance(config.get("pretrained_cfg"), dict)

    def stated_sizes(self, config: dict[str, Any]) -> tuple[Size | None, int | None] | None:
        cfg: dict[str, Any] = config.get("pretrained_cfg") or {}
        args: dict[str, Any] = config["model_args"] if isinstance(config.get("model_args"), dict) else {}
        sizes = []
        input_size = cfg.get("input_size")
        if input_size is not None:
            size = Size.from_json(input_size[1:]) if isinstance(input_size, list) and len(input_size) == 3 else None
            if size is None or type(input_size[0]) is not int:
                raise InputError(f"config.json has pretrained_cfg.input_size {input_size!r}, not [channels, H, W]")
            sizes.append(("pretrained_cfg.input_size", size))
        img_size = args.get("img_size")
        if img_size is not None:
            size = Size.from_json(img_size)
            if size is None:
                raise InputError(f"config.json has model_args.img_size {img_size!r}, not an int or [H, W]")
            sizes.append(("model_args.img_size", size))
        if len({size for _, size in sizes}) > 1:
            raise InputError(
                f"config.json says {' but '.join(f'{k} {size.px}' for k, size in sizes)}; timm builds the model "
                "from model_args: make them agree"
            )
        patch = args.get("patch_size")
        if type(patch) is not int:
            patch = timm_name_patch(str(config.get("architecture")))
        return (sizes[0][1] if sizes else None), patch

    def set_size(self, config: dict[str, Any], res: Size, patch: int) -> None:
        cfg: dict[str, Any] = config.setdefault("pretrained_cfg", {})
        old = cfg.get("input_size") or [3, *res.sides]
        cfg["input_size"] = [old[0], *res.sides]
        test = cfg.get("test_input_size")
        if isinstance(test, list) and len(test) == 3 and all(type(v) is int for v in test):
            # a larger evaluation size of the old model: the same share larger than the new size
            cfg["test_input_size"] = [
                test[0],
                round(test[1] * res.height / old[1]),
                round(test[2] * res.width / old[2]),
            ]
        args = config.get("model_args")
        if not isinstance(args, dict):
            args = config["model_args"] = {}
        args["img_size"] = res.json()

    def prefix_rows(self, rows: int, cells: int, tokens: dict[str, tuple[int, ...]]) -> int:
        return timm_prefix(rows, cells, tokens, self.pos_suffix)


TOKEN_NAMES = ("cls_token", "reg_token")


def timm_name_patch(name: str) -> int | None:
    """The patch size a timm architecture name states (`vit_base_patch16_224`: 16), or None."""
    found = re.search(r"patch(\d+)", name)
    return int(found.group(1)) if found else None


def timm_prefix(rows: int, cells: int, tokens: dict[str, tuple[int, ...]], pos_name: str) -> int:
    """A timm table's rows before the grid: none when it holds the grid alone (no class token, or
    no_embed_class), else its class token and registers as the weights hold them (`cls_token`
    [1, 1, C], `reg_token` [1, R, C] beside `pos_embed`). A table whose extra rows are not those
    disagrees with the config, and the caller says so."""
    if rows == cells:
        return 0
    base = pos_name.removesuffix("pos_embed")
    reg = tokens.get(base + "reg_token", ())
    return (1 if base + "cls_token" in tokens else 0) + (reg[1] if len(reg) == 3 else 0)


TIMM = TimmFamily(
    name="timm",
    pos_suffix="pos_embed",
    patch_suffix="patch_embed.proj.weight",
    num_prefix_tokens=1,  # the usual class token; the weights say (registers, no_embed_class)
    default_image_size=224,
    default_patch_size=16,
    antialias=True,
    batched=True,
    runtime="timm's `resample_abs_pos_embed` (antialias, float32; timm applies it on load)",
    library="timm",
    loader="`timm.create_model`",
    patch_from_weights=True,
    no_table="this timm model has no absolute position table (pos_embed): a convolutional or relative-position model "
    "takes another input size as it is; there is nothing to resize",
)


# timm architectures that are one network at several sizes: timm 1.0.31's entrypoints build each
# name `{stem}_{size}` as the same class with the same arguments but img_size, at the size its name
# ends in. open_clip 3.3.0 builds a trunk at its architecture's own size and nothing else, so these are
# the sizes such a tower can be converted to. Read from timm's VisionTransformer and Eva entrypoints;
# tests/test_real_libraries.py checks it against the timm it runs. A name alike is not always the same
# network: vit_large_patch16_siglip_512 uses gelu_tanh, its 256- and 384-px namesakes gelu (not listed).
TIMM_SIZES: dict[str, tuple[int, ...]] = {
    "aimv2_1b_patch14": (224, 336, 448),
    "aimv2_3b_patch14": (224, 336, 448),
    "aimv2_huge_patch14": (224, 336, 448),
    "aimv2_large_patch14": (224, 336, 448),
    "beit3_giant_patch14": (224, 336),
    "eva02_base_patch14": (224, 448),
    "eva02_large_patch14": (224, 448),
    "eva02_large_patch14_clip": (224, 336),
    "eva02_small_patch14": (224, 336),
    "eva02_tiny_patch14": (224, 336),
    "eva_giant_patch14": (224, 336, 560),
    "eva_large_patch14": (196, 336),
    "vit_base_patch16": (224, 384),
    "vit_base_patch16_clip": (224, 384),
    "vit_base_patch16_siglip": (224, 256, 384, 512),
    "vit_base_patch16_siglip_gap": (224, 256, 384, 512),
    "vit_base_patch32": (224, 384),
    "vit_base_patch32_clip": (224, 256, 384, 448),
    "vit_betwixt_patch16_reg4_gap": (256, 384),
    "vit_giantopt_patch16_siglip": (256, 384),
    "vit_giantopt_patch16_siglip_gap": (256, 384),
    "vit_gigantic_patch14_clip": (224, 378),
    "vit_huge_patch14_clip": (224, 336, 378),
    "vit_huge_patch14_clip_quickgelu": (224, 378),
    "vit_large_patch14_clip": (224, 336),
    "vit_large_patch14_clip_quickgelu": (224, 336),
    "vit_large_patch16": (224, 384),
    "vit_large_patch16_siglip": (256, 384),
    "vit_large_patch16_siglip_gap": (256, 384),
    "vit_large_patch32": (224, 384),
    "vit_medium_patch16_gap": (240, 256, 384),
    "vit_mediumd_patch16_reg4_gap": (256, 384),
    "vit_small_patch16": (224, 384),
    "vit_small_patch32": (224, 384),
    "vit_so150m2_patch16_reg1_gap": (256, 384, 448),
    "vit_so150m_patch16_reg4_gap": (256, 384),
    "vit_so400m_patch14_siglip": (224, 378, 384),
    "vit_so400m_patch14_siglip_gap": (224, 378, 384, 448, 896),
    "vit_so400m_patch16_siglip": (256, 384, 512),
    "vit_so400m_patch16_siglip_gap": (256, 384, 512),
    "vit_tiny_patch16": (224, 384),
}  # fmt: skip


def timm_arch(name: str) -> tuple[str, str, int | None]:
    """A timm architecture name without its pretrained tag, that name without the size it ends in,
    and that size, which is the one timm builds it at (`vit_so400m_patch14_siglip_384.webli`:
    `vit_so400m_patch14_siglip_384`, `vit_so400m_patch14_siglip`, 384); no size: (name, name, None)."""
    arch = name.split(".", 1)[0]
    found = re.search(r"_(\d+)$", arch)
    return (arch, arch[: found.start()], int(found.group(1))) if found else (arch, arch, None)


def listed(items: Sequence[object]) -> str:
    """`224, 378 and 384`."""
    return ", ".join(str(n) for n in items[:-1]) + f" and {items[-1]}" if len(items) > 1 else str(items[0])
