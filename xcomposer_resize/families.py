"""Model-family knowledge, kept in one place.

A family says which tensor is the vision position table, how many prefix rows it has, which
buffer holds the position ids, and which config keys hold the sizes. Adding SigLIP, DINOv2,
timm or open_clip means adding a `Family` here; nothing else should need to know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import InputError


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
        text_only, projections: which tensors a vision-only output drops or keeps on request.
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
        if config.get("model_type") == self.vision_model_type:
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
)

FAMILIES = (CLIP,)


def family_for(config: dict[str, Any]) -> Family:
    """The family of a `config.json`, or an InputError naming what was found."""
    model_type = config.get("model_type")
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    supported = ", ".join(t for f in FAMILIES for t in f.model_types)
    found = f"model_type {model_type!r}" if model_type else "no model_type"
    raise InputError(f"config.json has {found}; xcr supports CLIP vision towers ({supported})")
