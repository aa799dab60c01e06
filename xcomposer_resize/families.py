"""Model-family knowledge, kept in one place: one adapter per family.

An adapter says which tensor is the vision position table (never a text tower's), how many prefix
rows it has and whether it is stored [rows, C] or [1, rows, C], which buffer holds the position
ids, which config keys hold the sizes and what transformers assumes when they are missing, how a
vision-only output is configured, the interpolation the family's own runtime applies (xcr's
default for it), and the transformers classes that load it (the oracle of `xcr verify`). Adding a
family means adding an adapter here; convert, plan and the CLI only ask the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import InputError, UsageError, arg


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

    @property
    def has_text(self) -> bool:
        """Whether checkpoints of the family may hold more than the vision tower."""
        return bool(self.text_only)

    def find(self, names: list[str], suffix: str) -> str | None:
        """The one tensor name ending in `suffix` outside the excluded towers, or None."""
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
        if config.get("model_type") == self.vision_model_type:
            out = dict(config)
            if not self.has_text:
                return out
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
)

FAMILIES = (CLIP, SIGLIP, DINOV2, DINOV2_REGISTERS, VIT)
NAMES = {f.name.lower().replace(" with registers", "-registers"): f for f in FAMILIES}

# model types xcr recognises and refuses, with the reason
REFUSED = {
    "siglip2": (
        "a SigLIP2 NaFlex model, which resizes its position table for every image, to that image's own "
        "patch grid, at run time: there is no fixed size to convert it to (the fixed-resolution SigLIP2 "
        "checkpoints have model_type siglip, and xcr converts those)"
    ),
}


def family_named(name: str) -> Family:
    """The family called `name` (`--family`), case-insensitively."""
    found = NAMES.get(name.strip().lower())
    if found is None:
        raise UsageError(f"{arg('family', name)} is not a family xcr knows; use one of {', '.join(NAMES)}")
    return found


def family_for(config: dict[str, Any], name: str | None = None) -> Family:
    """The family of a `config.json` (or the one `name` forces), or an InputError naming what was
    found and what xcr supports."""
    if name is not None:
        return family_named(name)
    model_type = config.get("model_type")
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    if isinstance(model_type, str) and model_type in REFUSED:
        raise InputError(f"config.json has model_type {model_type!r}: {REFUSED[model_type]}")
    supported = ", ".join(t for f in FAMILIES for t in f.model_types)
    found = f"model_type {model_type!r}" if model_type else "no model_type"
    raise InputError(
        f"config.json has {found}; xcr converts the vision towers of {supported} "
        f"(if this is one of them, name it with {arg('family')} {'|'.join(NAMES)})"
    )
