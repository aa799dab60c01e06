"""Model-family knowledge, kept in one place: one adapter per family.

An adapter says which tensor is the vision position table (never a text tower's), how many prefix
rows it has and whether it is stored [rows, C] or [1, rows, C], which buffer holds the position
ids, which config keys hold the sizes and what transformers assumes when they are missing, how a
vision-only output is configured, the interpolation the family's own runtime applies (xcr's
default for it), and the transformers classes that load it (the oracle of `xcr verify`); for a
loaded transformers model, whether the table is an nn.Embedding's weight and which config object
states the size. Adding a family means adding an adapter here; convert, plan, model (resize_model)
and the CLI only ask the adapter.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, UsageError, arg
from ..size import Size


@dataclass(frozen=True)
class Family:
    """How one model family stores its vision position embedding.

    Attributes:
        name: short name shown to users.
        model_types: `config.json` `model_type` values of this family.
        pos_suffix: name suffix of the position table [prefix + g*g, C].
        ids_suffix: name suffix of the optional int position-id buffer [1, prefix + g*g].
        patch_suffix: name suffix of the patch embedding's kernel [C, 3, p, p] (the patch size p).
        exclude_prefixes: names starting with these are never the vision table (text towers).
        num_prefix_tokens: rows before the grid (CLIP: the class token).
        default_image_size, default_patch_size: what transformers assumes when config.json
            leaves them out (the config class's defaults).
        vision_model_type, vision_architectures: the config of a vision-only output.
        text_only, projections: which tensors a vision-only output drops or keeps on request
            (both empty for a vision model: it is all vision tower).
        mode, antialias: the interpolation the family's own runtime applies (xcr's default).
        batched: the table is stored [1, rows, C] (ViT, DINOv2), not [rows, C] (CLIP, SigLIP).
        top_level: the sizes are at the top level of config.json (a vision model's config).
        oracles: transformers classes that load a checkpoint of the family (full model first).
        runtime: the code that interpolates at run time (what the default equals), for cards and inspect.
        config_file: the file that holds the model config (open_clip: open_clip_config.json).
        square_only: why the family's checkpoints cannot be non-square ("": they can).
        embedding_weight: in a loaded transformers model, the table is the weight of an
            nn.Embedding inside the embeddings module (CLIP, SigLIP: its num_embeddings follows the
            rows), not a Parameter of the embeddings module itself (ViT, DINOv2).
    """

    name: str
    model_types: tuple[str, ...]
    pos_suffix: str
    ids_suffix: str
    patch_suffix: str
    exclude_prefixes: tuple[str, ...]
    num_prefix_tokens: int
    default_image_size: int
    default_patch_size: int
    vision_model_type: str
    vision_architectures: tuple[str, str]  # (without, with) the projection
    text_only: tuple[str, ...]  # top-level names of the parts a vision-only output drops
    projections: tuple[str, ...]  # top-level names of the vision projection
    mode: str = "bicubic"
    antialias: bool = False
    batched: bool = False
    top_level: bool = False
    oracles: tuple[str, ...] = ()
    runtime: str = ""
    config_file: str = "config.json"
    library: str = "transformers"  # the library that loads it (the model card's library_name)
    weight_files: tuple[str, ...] = ()  # its own weight files, first in a repo that carries several layouts
    vision_only_layout: bool = True  # a vision-only checkpoint of the family is something a loader loads
    square_only: str = ""  # why an output cannot be non-square, e.g. 448x672 ("": it can)
    square_architectures: tuple[str, ...] = ()  # architectures of the family that need a square grid all the same
    square_too: str = ""  # which of its checkpoints need a square grid all the same, in words (help texts)
    patch_from_weights: bool = False  # a patch size the config leaves out is the patch embedding kernel's (timm)
    no_table: str = ""  # what it means when the weights hold no position table ("": not a checkpoint of the family)
    embedding_weight: bool = False  # in a loaded model the table is an nn.Embedding's weight, not a bare Parameter

    @property
    def has_text(self) -> bool:
        """Whether checkpoints of the family may hold more than the vision tower."""
        return bool(self.text_only)

    def matches(self, config: dict[str, Any]) -> bool:
        """Whether `config` (config.json) is of this family."""
        return config.get("model_type") in self.model_types

    def square_reason(self, config: dict[str, Any]) -> str:
        """Why a checkpoint with this config cannot be converted to a non-square size ("": it can)."""
        archs = [a for a in config.get("architectures") or [] if a in self.square_architectures]
        if self.square_only or not archs:
            return self.square_only
        return f"transformers' {archs[0]} folds its output back into a square grid"

    def for_config(self, config: dict[str, Any]) -> Family:
        """The adapter for this very config: itself, or a variant (open_clip's timm-trunk towers)."""
        return self

    def refusal(self, config: dict[str, Any], res: Size) -> str:
        """Why no config the family's loader reads builds this checkpoint at `res` ("": one does).
        Asked before any work; `set_size` may rely on it."""
        return ""

    def size_note(self, config: dict[str, Any], res: Size) -> str:
        """What the user should know about how `res` is stated for this config ("": nothing)."""
        return ""

    def stated_sizes(self, config: dict[str, Any]) -> tuple[Size | None, int | None] | None:
        """(image size, patch size) as the config states them (None for a key it leaves out), for a
        family whose sizes are not in vision config blocks; None: read the blocks (the default)."""
        return None

    def set_size(self, config: dict[str, Any], res: Size, patch: int) -> None:
        """State `res` in `config` (a copy, changed in place) wherever the family's loader reads it:
        an int when square, [height, width] otherwise (only for a family that is not square_only)."""
        for block in self.vision_config_blocks(config):
            block["image_size"] = res.json()
            block.setdefault("patch_size", patch)

    def prefix_rows(self, rows: int, cells: int, tokens: dict[str, tuple[int, ...]]) -> int:
        """The rows before the grid in a table of `rows` rows whose grid has `cells` cells; `tokens`:
        the shapes of the checkpoint's prefix-token tensors (names ending in TOKEN_NAMES)."""
        return self.num_prefix_tokens

    def find(self, names: list[str], suffix: str) -> str | None:
        """The one tensor name ending in `suffix` outside the excluded towers, or None."""
        if not suffix:
            return None
        hits = [
            n for n in names if (n == suffix or n.endswith("." + suffix)) and not n.startswith(self.exclude_prefixes)
        ]
        if len(hits) > 1:
            raise InputError(f"found {len(hits)} vision position tables ({', '.join(hits)}); expected one")
        return hits[0] if hits else None

    def is_vision_tensor(self, name: str, projection: bool) -> bool:
        """Whether `name` belongs in a vision-only output: the vision tower, and its projection into
        the shared embedding space when `projection` (CLIPVisionModelWithProjection wants it,
        CLIPVisionModel does not). Never the text tower, its projection or the logit scale."""
        if name.startswith(self.exclude_prefixes) or name.split(".")[0] in self.text_only:
            return False
        return projection or name.split(".")[0] not in self.projections

    def vision_only_config(self, config: dict[str, Any], projection: bool) -> dict[str, Any]:
        """The config of a vision-only checkpoint made from `config`: the vision block at the top
        level (the legacy `vision_config_dict` applied, as transformers applies it), with the
        architecture that takes exactly the tensors `is_vision_tensor` keeps."""
        if not self.has_text:  # a vision model already (DINOv2, ViT, timm): its config as it is
            return dict(config)
        if config.get("model_type") == self.vision_model_type:
            out = dict(config)
        else:
            out = dict(config.get("vision_config") or {})
            out.update(config.get("vision_config_dict") or {})
            for key in ("projection_dim", "torch_dtype", "dtype", "transformers_version"):
                if key in config:
                    out[key] = config[key]
        out["model_type"] = self.vision_model_type
        out["architectures"] = [self.vision_architectures[projection]]
        out.pop("_name_or_path", None)
        return out

    def vision_config_of(self, config: Any) -> Any:
        """In a loaded transformers model: the config object that states the vision tower's sizes,
        where `vision_config_blocks` finds them in config.json: `config` itself for a vision model,
        its `vision_config` for a full one (CLIPModel, SiglipModel). transformers drops the legacy
        `vision_config_dict` when it builds the config, so there is no second block to keep in step."""
        if self.top_level or getattr(config, "model_type", None) == self.vision_model_type:
            return config
        return config.vision_config

    def set_model_size(self, config: Any, res: Size) -> None:
        """State `res` in a loaded model's config object as `set_size` states it in config.json: the
        vision config's image_size, an int when square, [height, width] otherwise."""
        self.vision_config_of(config).image_size = res.json()

    def vision_config_blocks(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        """The config dicts that hold `image_size`/`patch_size` for the vision tower.

        For a full CLIP config these are `vision_config` and, when present, the legacy
        `vision_config_dict` (which transformers lets override `vision_config`); for a
        vision-only config, the top level.
        """
        if self.top_level or config.get("model_type") == self.vision_model_type:
            return [config]
        blocks = []
        for key in ("vision_config", "vision_config_dict"):
            block = config.get(key)
            if isinstance(block, dict):
                blocks.append(block)
        return blocks


CLIP = Family(
    name="CLIP",
    model_types=("clip", "clip_vision_model"),
    pos_suffix="embeddings.position_embedding.weight",
    ids_suffix="embeddings.position_ids",
    patch_suffix="embeddings.patch_embedding.weight",
    exclude_prefixes=("text_model.",),
    num_prefix_tokens=1,
    default_image_size=224,  # transformers' CLIPVisionConfig
    default_patch_size=32,
    vision_model_type="clip_vision_model",
    vision_architectures=("CLIPVisionModel", "CLIPVisionModelWithProjection"),
    text_only=("text_model", "text_projection", "logit_scale"),
    projections=("visual_projection",),
    oracles=("CLIPModel", "CLIPVisionModel"),
    runtime="InternLM-XComposer's `resize_pos` and transformers' `interpolate_pos_encoding`",
    square_only="transformers' CLIP config states one image_size and CLIPVisionEmbeddings builds a square grid from it",
    embedding_weight=True,
)

SIGLIP = Family(
    name="SigLIP",
    model_types=("siglip", "siglip_vision_model"),
    pos_suffix="embeddings.position_embedding.weight",
    ids_suffix="embeddings.position_ids",
    patch_suffix="embeddings.patch_embedding.weight",
    exclude_prefixes=("text_model.",),
    num_prefix_tokens=0,  # no class token: the table is the grid
    default_image_size=224,  # transformers' SiglipVisionConfig (hub configs may leave it out)
    default_patch_size=16,
    vision_model_type="siglip_vision_model",
    vision_architectures=("SiglipVisionModel", "SiglipVisionModel"),
    text_only=("text_model", "logit_scale", "logit_bias"),
    projections=(),
    oracles=("SiglipModel", "SiglipVisionModel"),
    runtime="transformers' `SiglipVisionEmbeddings.interpolate_pos_encoding`",
    square_only="transformers' SigLIP config states one image_size and SiglipVisionEmbeddings builds a square grid "
    "from it",
    embedding_weight=True,
)

DINOV2 = Family(
    name="DINOv2",
    model_types=("dinov2",),
    pos_suffix="embeddings.position_embeddings",
    ids_suffix="embeddings.position_ids",
    patch_suffix="embeddings.patch_embeddings.projection.weight",
    exclude_prefixes=(),
    num_prefix_tokens=1,
    default_image_size=224,  # transformers' Dinov2Config
    default_patch_size=14,
    vision_model_type="dinov2",
    vision_architectures=("Dinov2Model", "Dinov2Model"),
    text_only=(),
    projections=(),
    batched=True,
    top_level=True,
    oracles=("Dinov2Model",),
    runtime="transformers' `Dinov2Embeddings.interpolate_pos_encoding` (float32, on every forward)",
    square_only="transformers' DINOv2 resamples its table on every forward pass and reads it as a square grid",
)

DINOV2_REGISTERS = Family(
    name="DINOv2 with registers",
    model_types=("dinov2_with_registers",),
    pos_suffix="embeddings.position_embeddings",
    ids_suffix="embeddings.position_ids",
    patch_suffix="embeddings.patch_embeddings.projection.weight",
    exclude_prefixes=(),
    num_prefix_tokens=1,  # the class token; the registers are added after the positions and have none
    default_image_size=224,  # transformers' Dinov2WithRegistersConfig
    default_patch_size=16,
    vision_model_type="dinov2_with_registers",
    vision_architectures=("Dinov2WithRegistersModel", "Dinov2WithRegistersModel"),
    text_only=(),
    projections=(),
    antialias=True,
    batched=True,
    top_level=True,
    oracles=("Dinov2WithRegistersModel",),
    runtime="transformers' `Dinov2WithRegistersEmbeddings.interpolate_pos_encoding` (antialias, float32)",
    square_only="transformers' DINOv2 with registers resamples its table on every forward pass and reads it as a "
    "square grid",
)

VIT = Family(
    name="ViT",
    model_types=("vit",),
    pos_suffix="embeddings.position_embeddings",
    ids_suffix="embeddings.position_ids",
    patch_suffix="embeddings.patch_embeddings.projection.weight",
    exclude_prefixes=(),
    num_prefix_tokens=1,
    default_image_size=224,  # transformers' ViTConfig
    default_patch_size=16,
    vision_model_type="vit",
    vision_architectures=("ViTModel", "ViTModel"),
    text_only=(),
    projections=(),
    batched=True,
    top_level=True,
    oracles=("ViTModel",),
    runtime="transformers' `ViTEmbeddings.interpolate_pos_encoding`",
    square_architectures=("ViTForMaskedImageModeling",),
)


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

    def vision_config_blocks(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        return []


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
    model_types=(),
    pos_suffix="pos_embed",
    ids_suffix="",
    patch_suffix="patch_embed.proj.weight",
    exclude_prefixes=(),
    num_prefix_tokens=1,  # the usual class token; the weights say (registers, no_embed_class)
    default_image_size=224,
    default_patch_size=16,
    vision_model_type="",
    vision_architectures=("", ""),
    text_only=(),
    projections=(),
    antialias=True,
    batched=True,
    top_level=True,
    runtime="timm's `resample_abs_pos_embed` (antialias, float32; timm applies it on load)",
    library="timm",
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


def _listed(items: Sequence[object]) -> str:
    """`224, 378 and 384`."""
    return ", ".join(str(n) for n in items[:-1]) + f" and {items[-1]}" if len(items) > 1 else str(items[0])


# the open_clip release whose loader xcr writes for; the first one that reads vision_cfg.timm_model_kwargs
# is a later one (open_clip's main branch has it since May 2026)
OPEN_CLIP_RELEASE = "3.3.0"


@dataclass(frozen=True)
class OpenClipFamily(Family):
    """open_clip's hub layout: open_clip_config.json = {model_cfg {embed_dim, vision_cfg {image_size,
    patch_size, width, ...}, text_cfg}, preprocess_cfg}; weights open_clip_model.safetensors or
    open_clip_pytorch_model.bin. The vision table is `visual.positional_embedding` [1+N, C]; the text
    tower's is the top-level `positional_embedding` (`text.positional_embedding`), never touched.

    A tower built on a timm trunk (vision_cfg.timm_model_name, e.g. ViT-SO400M-14-SigLIP-384) keeps
    its table in the trunk, `visual.trunk.pos_embed` [1, P+N, C], with timm's prefix rows (none for
    SigLIP trunks). open_clip 3.3.0 (`TimmModel`) builds the trunk with `timm.create_model(
    timm_model_name)`, at the size the architecture states (image_size only sizes the preprocessing),
    loads the table strictly and resamples it only for `force_image_size`, after loading; its
    CLIPVisionCfg refuses any key it does not know. So the output names timm's architecture of the
    same network at the new size (vit_so400m_patch14_siglip_384 → _378, TIMM_SIZES), and a size timm
    has no such architecture for is refused. A source that states vision_cfg.timm_model_kwargs (which
    open_clip reads only after 3.3.0: `timm.create_model(name, **timm_model_kwargs)`) is written in
    that form: the new size in timm_model_kwargs.img_size, any size."""

    trunk: bool = False  # the timm-trunk form (for_config)

    def matches(self, config: dict[str, Any]) -> bool:
        cfg = config.get("model_cfg")
        return isinstance(cfg, dict) and isinstance(cfg.get("vision_cfg"), dict)

    def for_config(self, config: dict[str, Any]) -> Family:
        if self.trunk or not self._vision(config).get("timm_model_name"):
            return self
        return dataclasses.replace(
            self,
            pos_suffix="visual.trunk.pos_embed",
            patch_suffix="visual.trunk.patch_embed.proj.weight",
            batched=True,
            trunk=True,
            patch_from_weights=True,
            no_table="the timm trunk of this open_clip tower has no absolute position table (visual.trunk.pos_embed): "
            "a convolutional or relative-position tower takes another input size as it is; there is nothing to resize",
            runtime="timm's `resample_abs_pos_embed` (antialias, float32; what open_clip's `force_image_size` applies "
            "to a trunk)",
        )

    def _vision(self, config: dict[str, Any]) -> dict[str, Any]:
        vision: dict[str, Any] = (config.get("model_cfg") or {}).get("vision_cfg") or {}
        return vision

    def _kwargs(self, config: dict[str, Any]) -> dict[str, Any]:
        kwargs = self._vision(config).get("timm_model_kwargs")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise InputError(f"open_clip_config.json has vision_cfg.timm_model_kwargs {kwargs!r}, not an object")
        return kwargs or {}

    def _newer(self, config: dict[str, Any]) -> bool:
        """The config states timm_model_kwargs: it is for an open_clip after 3.3.0, which reads them."""
        return self.trunk and self._vision(config).get("timm_model_kwargs") is not None

    def _trunk_at(self, config: dict[str, Any], res: Size) -> str | None:
        """The timm architecture open_clip 3.3.0 builds at `res`: the config's own when it is built at
        that size, else its namesake of that size (TIMM_SIZES); None when timm has none."""
        name = str(self._vision(config).get("timm_model_name"))
        _, stem, built = timm_arch(name)
        stated = self.stated_sizes(config)
        if stated is not None and res == stated[0]:
            return name  # the size it has: the trunk is built as it was
        if built is not None and res.is_square and res.height in TIMM_SIZES.get(stem, ()):
            return f"{stem}_{res.height}"
        return None

    def square_reason(self, config: dict[str, Any]) -> str:
        if not self.trunk or self._newer(config):
            return ""
        return (
            f"open_clip {OPEN_CLIP_RELEASE} builds a timm trunk at the size its architecture states, and timm's are "
            "square"
        )

    def refusal(self, config: dict[str, Any], res: Size) -> str:
        if not self.trunk or self._newer(config) or self._trunk_at(config, res) is not None:
            return ""
        name = str(self._vision(config).get("timm_model_name"))
        arch, stem, built = timm_arch(name)
        sizes = TIMM_SIZES.get(stem, ()) if built is not None else ()
        has = (
            f"timm has that network at {_listed(sizes)} px only ({stem}_N)"
            if sizes
            else f"xcr knows no other size of {arch} in timm"
        )
        other = "convert to one of those, or " if sizes else ""
        return (
            f"open_clip {OPEN_CLIP_RELEASE} cannot build this tower at {res.px}: it builds the timm trunk at the "
            f"size the architecture states ({name}), and {has}; {other}load the source with "
            f"open_clip.create_model_and_transforms(..., force_image_size={res.json()}), which resamples the table "
            "the same way as it loads"
        )

    def size_note(self, config: dict[str, Any], res: Size) -> str:
        if not self.trunk:
            return ""
        if self._newer(config):
            return (
                f"the source states vision_cfg.timm_model_kwargs, which open_clip reads only after "
                f"{OPEN_CLIP_RELEASE} ({OPEN_CLIP_RELEASE} refuses the key): the output states {res} there too "
                "(img_size), and loads with such an open_clip"
            )
        name, new = str(self._vision(config).get("timm_model_name")), self._trunk_at(config, res)
        if new is None or new == name:
            return ""
        return (
            f"the trunk becomes {new}, timm's {name} network at {res.px}: open_clip builds a timm trunk at the size "
            "its architecture states"
        )

    def stated_sizes(self, config: dict[str, Any]) -> tuple[Size | None, int | None] | None:
        vision = self._vision(config)
        image, patch = vision.get("image_size"), vision.get("patch_size")
        size = None if image is None else Size.from_json(image)
        if image is not None and size is None:
            raise InputError(f"open_clip_config.json has vision_cfg.image_size {image!r}, not an int or [H, W]")
        if self.trunk:
            kwargs, name = self._kwargs(config), str(vision.get("timm_model_name"))
            _, stem, built = timm_arch(name)  # timm builds vit_so400m_patch14_siglip_384 at 384 px
            if self._newer(config):
                stated = kwargs.get("img_size")
                trunk = None if stated is None else Size.from_json(stated)
                if stated is not None and trunk is None:
                    raise InputError(
                        f"open_clip_config.json has timm_model_kwargs.img_size {stated!r}, not an int or [H, W]"
                    )
                said = "timm_model_kwargs.img_size {}; open_clip builds the trunk from timm_model_kwargs"
            else:
                trunk = Size.square(built) if built is not None and stem in TIMM_SIZES else None
                said = f"open_clip {OPEN_CLIP_RELEASE} builds the trunk {name} at {{}}"
            if trunk is not None and size is not None and trunk != size:
                raise InputError(
                    f"open_clip_config.json says vision_cfg.image_size {size.px} but {said.format(trunk.px)}: "
                    "make them agree"
                )
            size = trunk or size or (Size.square(built) if built is not None else None)
            patch = kwargs.get("patch_size")
            if patch is None:
                patch = timm_name_patch(name)
        if isinstance(patch, list) and len(patch) == 2 and patch[0] == patch[1]:
            patch = patch[0]
        if patch is not None and (type(patch) is not int or patch <= 0):
            raise InputError(f"open_clip_config.json has vision_cfg.patch_size {patch!r}, not a positive integer")
        return size, patch

    def set_size(self, config: dict[str, Any], res: Size, patch: int) -> None:
        vision = self._vision(config)
        if self.trunk and not self._newer(config):
            name = self._trunk_at(config, res)
            if name is None:
                raise UsageError(self.refusal(config, res))
            vision["timm_model_name"] = name
        vision["image_size"] = res.json()
        preprocess = config.get("preprocess_cfg")
        if isinstance(preprocess, dict) and preprocess.get("size") is not None:  # open_clip overrides it anyway
            preprocess["size"] = res.json()
        if self._newer(config):
            vision["timm_model_kwargs"] = {**self._kwargs(config), "img_size": res.json()}
        elif not self.trunk:
            vision.setdefault("patch_size", patch)

    def prefix_rows(self, rows: int, cells: int, tokens: dict[str, tuple[int, ...]]) -> int:
        return timm_prefix(rows, cells, tokens, self.pos_suffix) if self.trunk else self.num_prefix_tokens

    def vision_config_blocks(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        return []


OPEN_CLIP = OpenClipFamily(
    name="open_clip",
    square_too="not its timm trunks",
    model_types=(),
    pos_suffix="visual.positional_embedding",
    ids_suffix="",
    patch_suffix="visual.conv1.weight",
    exclude_prefixes=(),
    num_prefix_tokens=1,  # the class token, always (a timm trunk: what its table holds beyond the grid)
    default_image_size=224,  # open_clip's CLIPVisionCfg
    default_patch_size=16,
    vision_model_type="",
    vision_architectures=("", ""),
    text_only=(
        "transformer",
        "token_embedding",
        "positional_embedding",
        "ln_final",
        "text_projection",
        "logit_scale",
        "logit_bias",
        "attn_mask",
        "text",
    ),  # fmt: skip
    projections=(),
    antialias=True,
    runtime="open_clip's `resize_pos_embed` (antialias; open_clip applies it on load)",
    config_file="open_clip_config.json",
    library="open_clip",
    weight_files=("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
    vision_only_layout=False,
)

FAMILIES = (CLIP, SIGLIP, DINOV2, DINOV2_REGISTERS, VIT, TIMM, OPEN_CLIP)
NAMES = {f.name.lower().replace(" with registers", "-registers").replace("_", "-"): f for f in FAMILIES}

_NAFLEX = (
    "a SigLIP2 NaFlex model, which resizes its position table for every image, to that image's own "
    "patch grid, at run time: there is no fixed size to convert it to (the fixed-resolution SigLIP2 "
    "checkpoints have model_type siglip, and xcr converts those)"
)

# model types xcr recognises and refuses, with the reason
REFUSED = {"siglip2": _NAFLEX, "siglip2_vision_model": _NAFLEX}


def family_named(name: str) -> Family:
    """The family called `name` (`--family`), case-insensitively."""
    key = name.strip().lower()
    found = NAMES.get(key.replace("_", "-")) or next((f for f in FAMILIES if f.name.lower() == key), None)
    if found is None:
        raise UsageError(f"{arg('family', name)} is not a family xcr knows; use one of {', '.join(NAMES)}")
    return found


def family_for(config: dict[str, Any], name: str | None = None) -> Family:
    """The family of a `config.json` (or the one `name` forces), or an InputError naming what was
    found and what xcr supports."""
    if name is not None:
        forced = family_named(name)
        named = next((f for f in FAMILIES if f.matches(config)), None)
        if named is not None and named is not forced:
            raise UsageError(
                f"{arg('family', name)} contradicts the config, which is of the {named.name} family"
                f"{' (model_type ' + repr(config.get('model_type')) + ')' if config.get('model_type') else ''}; "
                f"leave {arg('family')} out (it is for configs that name no family xcr knows)"
            )
        return forced.for_config(config)
    model_type = config.get("model_type")
    for family in FAMILIES:
        if family.matches(config):
            return family.for_config(config)
    if isinstance(model_type, str) and model_type in REFUSED:
        raise InputError(f"config.json has model_type {model_type!r}: {REFUSED[model_type]}")
    supported = ", ".join(t for f in FAMILIES for t in f.model_types) + ", and timm's and open_clip's hub layouts"
    found = f"model_type {model_type!r}" if model_type else "no model_type"
    raise InputError(
        f"config.json has {found}; xcr converts the vision towers of {supported} "
        f"(if this is one of them, name it with {arg('family')} {'|'.join(NAMES)})"
    )


# ---------------------------------------------------------------- words for help texts, from the table


def family_words() -> str:
    """The families, as help texts name them: `CLIP, SigLIP, DINOv2, …`."""
    return ", ".join(f.name for f in FAMILIES if f is not DINOV2_REGISTERS)


def flag_of(family: Family) -> str:
    """How `--family` spells `family`: `dinov2-registers`."""
    return next(key for key, f in NAMES.items() if f.name == family.name)


def flag_names() -> str:
    """The `--family` spellings: `clip, siglip, dinov2, …`."""
    return ", ".join(NAMES)


def non_square_words() -> str:
    """The families whose checkpoints take HxW sizes: `ViT, timm and open_clip`."""
    return _listed([f.name + (f" ({f.square_too})" if f.square_too else "") for f in FAMILIES if not f.square_only])


def method_words() -> tuple[str, str]:
    """(mode, antialias) defaults in words: `bicubic for every family`; `on for …; off for …`."""
    modes = {f.mode for f in FAMILIES}
    mode = f"{modes.pop()} for every family" if len(modes) == 1 else "; ".join(f"{f.name}: {f.mode}" for f in FAMILIES)
    on = [f.name for f in FAMILIES if f.antialias]
    off = [f.name for f in FAMILIES if not f.antialias]
    return mode, f"on for {', '.join(on)}; off for {', '.join(off)}"
