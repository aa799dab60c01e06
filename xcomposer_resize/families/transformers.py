"""transformers' families: CLIP, SigLIP, DINOv2, DINOv2 with registers, ViT.

What they share is transformers' layer: a `model_type` in config.json names the family; the sizes
are in the vision config blocks (`vision_config`, the legacy `vision_config_dict` that overrides
it, or the top level of a vision model's config); the processor files state the pixel sizes the
model sees; the config states the weights' dtype; a vision-only output is the vision tower with
its config at the top level; and transformers' own classes load the checkpoint (the oracle of
`xcr verify`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..size import Size
from .base import Family

# Processor files that may state an image size, as transformers names them: the image processor's
# own file, and the processor file that transformers 5 writes with a nested `image_processor` block
# (and reads before preprocessor_config.json).
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
SIZE_KEYS = ("size", "crop_size")
SIZE_DICT_KEYS = ("shortest_edge", "longest_edge", "height", "width")
# Image processors that read a one-number `size` as a square (transformers' get_size_dict with
# default_to_square); the others (CLIP, BiT) read it as the shortest edge. `crop_size` is a square
# in every processor.
SQUARE_SIZE_PROCESSORS = ("ViTImageProcessor", "ViTImageProcessorFast", "ViTFeatureExtractor")


@dataclass(frozen=True)
class TransformersFamily(Family):
    """A family transformers implements (see the module doc).

    Attributes:
        model_types: `config.json` `model_type` values of this family.
        vision_model_type, vision_architectures: the config of a vision-only output (without, with
            the projection).
        text_only, projections: the top-level names of what a vision-only output drops, or keeps on
            request (both empty for a vision model: it is all vision tower).
        top_level: the sizes are at the top level of config.json (a vision model's config).
        oracles: transformers classes that load a checkpoint of the family (full model first).
        square_architectures: architectures of the family that need a square grid all the same.
        embedding_weight: in a loaded model the table is an nn.Embedding's weight (CLIP, SigLIP: its
            num_embeddings follows the rows), not a Parameter of the embeddings module (ViT, DINOv2).
    """

    model_types: tuple[str, ...] = ()
    vision_model_type: str = ""
    vision_architectures: tuple[str, str] = ("", "")
    text_only: tuple[str, ...] = ()
    projections: tuple[str, ...] = ()
    top_level: bool = False
    oracles: tuple[str, ...] = ()
    square_architectures: tuple[str, ...] = ()
    embedding_weight: bool = False
    processor_files: bool = True
    states_dtype: bool = True

    def matches(self, config: dict[str, Any]) -> bool:
        return config.get("model_type") in self.model_types

    @property
    def type_words(self) -> tuple[str, ...]:
        """How an error lists the configs of this family."""
        return self.model_types

    def square_reason(self, config: dict[str, Any]) -> str:
        archs = [a for a in config.get("architectures") or [] if a in self.square_architectures]
        if self.square_only or not archs:
            return self.square_only
        return f"transformers' {archs[0]} folds its output back into a square grid"

    def vision_config_blocks(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        """For a full CLIP config: `vision_config` and, when present, the legacy `vision_config_dict`
        (which transformers lets override `vision_config`); for a vision-only config, the top level."""
        if self.top_level or config.get("model_type") == self.vision_model_type:
            return [config]
        return [b for b in (config.get("vision_config"), config.get("vision_config_dict")) if isinstance(b, dict)]

    def rewrite_processor(
        self, data: dict[str, Any], res: Size, filename: str, config: dict[str, Any]
    ) -> dict[str, Any]:
        return rewrite_processor(data, res, filename)

    # ------------------------------------------------------------ a vision-only output

    @property
    def has_text(self) -> bool:
        return bool(self.text_only)

    def is_vision_tensor(self, name: str, projection: bool) -> bool:
        """The vision tower, and its projection into the shared embedding space when `projection`
        (CLIPVisionModelWithProjection wants it, CLIPVisionModel does not). Never the text tower, its
        projection or the logit scale."""
        if name.startswith(self.exclude_prefixes) or name.split(".")[0] in self.text_only:
            return False
        return projection or name.split(".")[0] not in self.projections

    def vision_only_problem(self, names: list[str], projection: bool) -> str:
        if not projection:
            return ""
        if not self.projections:
            return (
                f"{self.name} vision towers have no projection to keep ({self.vision_architectures[False]} has "
                "none); leave {with_projection} out"
            )
        if not any(n.split(".")[0] in self.projections for n in names):
            return (
                f"the source has no {' or '.join(self.projections)} to keep; leave {{with_projection}} out: "
                f"its vision tower loads as {self.vision_architectures[False]}"
            )
        return ""

    def vision_only_config(
        self, config: dict[str, Any], projection: bool, shapes: dict[str, tuple[int, ...]] | None = None
    ) -> dict[str, Any]:
        """The vision block at the top level (the legacy `vision_config_dict` applied, as transformers
        applies it), with the architecture that takes exactly the tensors `is_vision_tensor` keeps."""
        if not self.has_text:  # a vision model already (DINOv2, ViT): its config as it is
            return dict(config)
        if config.get("model_type") == self.vision_model_type:
            block = config
        else:
            block = {**(config.get("vision_config") or {}), **(config.get("vision_config_dict") or {})}
        return lifted(block, config, ("projection_dim",), self.vision_model_type, self.vision_architectures[projection])

    def vision_only_form(self, config: dict[str, Any]) -> tuple[bool, bool]:
        alone = self.has_text and config.get("model_type") == self.vision_model_type
        return alone, alone and bool(self.projections) and self.vision_architectures[True] in (
            config.get("architectures") or []
        )

    def vision_architecture(self, config: dict[str, Any], projection: bool) -> str | None:
        return self.vision_architectures[projection] if self.has_text else None

    # ------------------------------------------------------------ a loaded model (resize_model)

    def vision_config_of(self, config: Any) -> Any:
        """In a loaded model: the config object that states the vision tower's sizes, where
        `vision_config_blocks` finds them in config.json: `config` itself for a vision model, its
        `vision_config` for a full one. transformers drops the legacy `vision_config_dict` when it
        builds the config, so there is no second block to keep in step."""
        if self.top_level or getattr(config, "model_type", None) == self.vision_model_type:
            return config
        return config.vision_config

    def set_model_size(self, config: Any, res: Size) -> None:
        """State `res` in a loaded model's config object as `set_size` states it in config.json."""
        self.vision_config_of(config).image_size = res.json()

    def oracle(self, config: dict[str, Any]) -> str | None:
        """Its architecture when transformers has that class, else the family's (a vision-only
        config: the vision model)."""
        try:
            import transformers

            named = [a for a in config.get("architectures") or [] if hasattr(transformers, a)]
        except ImportError:  # the name is still the family's; loading it is the caller's concern
            named = []
        if named:
            return str(named[0])
        return self.oracles[-1] if self.vision_only_form(config)[0] else self.oracles[0]


CLIP = TransformersFamily(
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

SIGLIP = TransformersFamily(
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
    oracles=("SiglipModel", "SiglipVisionModel"),
    runtime="transformers' `SiglipVisionEmbeddings.interpolate_pos_encoding`",
    square_only="transformers' SigLIP config states one image_size and SiglipVisionEmbeddings builds a square grid "
    "from it",
    embedding_weight=True,
)

_DINOV2 = {  # what DINOv2 and DINOv2 with registers share
    "pos_suffix": "embeddings.position_embeddings",
    "ids_suffix": "embeddings.position_ids",
    "patch_suffix": "embeddings.patch_embeddings.projection.weight",
    "num_prefix_tokens": 1,  # the class token; registers are added after the positions and have none
    "default_image_size": 224,  # transformers' Dinov2Config, Dinov2WithRegistersConfig
    "batched": True,
    "top_level": True,
}

DINOV2 = TransformersFamily(
    name="DINOv2",
    model_types=("dinov2",),
    default_patch_size=14,
    vision_model_type="dinov2",
    vision_architectures=("Dinov2Model", "Dinov2Model"),
    oracles=("Dinov2Model",),
    runtime="transformers' `Dinov2Embeddings.interpolate_pos_encoding` (float32, on every forward)",
    square_only="transformers' DINOv2 resamples its table on every forward pass and reads it as a square grid",
    **_DINOV2,  # type: ignore[arg-type]
)

DINOV2_REGISTERS = TransformersFamily(
    name="DINOv2 with registers",
    model_types=("dinov2_with_registers",),
    default_patch_size=16,
    vision_model_type="dinov2_with_registers",
    vision_architectures=("Dinov2WithRegistersModel", "Dinov2WithRegistersModel"),
    antialias=True,
    oracles=("Dinov2WithRegistersModel",),
    runtime="transformers' `Dinov2WithRegistersEmbeddings.interpolate_pos_encoding` (antialias, float32)",
    square_only="transformers' DINOv2 with registers resamples its table on every forward pass and reads it as a "
    "square grid",
    **_DINOV2,  # type: ignore[arg-type]
)

VIT = TransformersFamily(
    name="ViT",
    model_types=("vit",),
    pos_suffix="embeddings.position_embeddings",
    ids_suffix="embeddings.position_ids",
    patch_suffix="embeddings.patch_embeddings.projection.weight",
    num_prefix_tokens=1,
    default_image_size=224,  # transformers' ViTConfig
    default_patch_size=16,
    vision_model_type="vit",
    vision_architectures=("ViTModel", "ViTModel"),
    batched=True,
    top_level=True,
    oracles=("ViTModel",),
    runtime="transformers' `ViTEmbeddings.interpolate_pos_encoding`",
    square_architectures=("ViTForMaskedImageModeling",),
)

TRANSFORMERS = (CLIP, SIGLIP, DINOV2, DINOV2_REGISTERS, VIT)


def lifted(block: dict[str, Any], config: dict[str, Any], keys: tuple[str, ...], model_type: str,
           architecture: str) -> dict[str, Any]:  # fmt: skip
    """A vision block as a vision model's whole config: the top level's `keys`, dtype and version copied in
    (a block that is the whole config keeps its own), with `model_type` and `architecture`."""
    out = dict(block)
    if block is not config:
        out.update({k: config[k] for k in (*keys, "torch_dtype", "dtype", "transformers_version") if k in config})
    out["model_type"] = model_type
    out["architectures"] = [architecture]
    out.pop("_name_or_path", None)
    return out


# ---------------------------------------------------------------- processor files


def rewrite_processor(data: dict[str, Any], res: Size, filename: str) -> dict[str, Any]:
    """A copy of a processor file whose images come out `res`, each size in the form it had.

    Sizes are `size` and `crop_size` at the top level (preprocessor_config.json) and in the blocks
    nested under a `…processor` key (processor_config.json: `image_processor`, `video_processor`).
    Forms: an int, [h, w], {"shortest_edge": n}, {"longest_edge": n}, {"height": n, "width": n}.
    `crop_size` (what the model sees) becomes `res`. `size` becomes `res` too, unless the block
    resizes and then crops: then it keeps its own relation to its own crop, side by side (DINOv2's
    resize 256 / crop 224 becomes 512 / 448 at 448 px), whatever size config.json states. A
    non-square `res` needs two sides: a one-number size that the processor reads as a square
    (crop sizes; ViT's size) becomes {"height": H, "width": W}; one it reads as an edge is refused.
    """
    out = copy.deepcopy(data)
    for where, block in size_blocks(out):
        if _image_processor(block) and block.get("size") is None and block.get("crop_size") is None:
            raise InputError(
                f"{filename} has an image processor ({_image_processor(block)}) that states no size, so its class's "
                f"default applies, which xcr cannot change to {res.px}; state the source's size in it and convert again"
            )
        if block.get("do_center_crop") is True and block.get("crop_size") is None:
            block["crop_size"] = {"height": res.height, "width": res.width}  # the class default would stay
        elif _image_processor(block) and block.get("size") is None and block.get("do_center_crop") is not False:
            raise InputError(
                f"{filename} states {where}crop_size but no size, so its class's default resize applies before the "
                f"crop, which xcr cannot scale to {res.px}; state the source's size in it and convert again"
            )
        crop = block.get("crop_size") if block.get("do_center_crop", True) is not False else None
        crop_sides = sides(crop) if crop is not None else None
        square_ints = any(
            block.get(k) in SQUARE_SIZE_PROCESSORS for k in ("image_processor_type", "feature_extractor_type")
        )
        for key in SIZE_KEYS:
            if block.get(key) is not None:
                scale = crop_sides if key == "size" else None
                square = key == "crop_size" or square_ints
                block[key] = _resized(block[key], res, scale, f"{filename} has {where}{key}", square)
    return out


def _image_processor(block: dict[str, Any]) -> str:
    """The image processor class a processor block configures ("": the block is not an image processor's)."""
    return str(block.get("image_processor_type") or block.get("feature_extractor_type") or "")


def size_blocks(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The blocks of a processor file that may state sizes, with where they are (`image_processor.`)."""
    blocks = [("", data)]
    for key, value in data.items():
        if key.endswith("processor") and isinstance(value, dict):
            blocks.append((f"{key}.", value))
    return blocks


def sides(value: Any) -> tuple[int, int] | None:
    """(height, width) of a size that states both (an int square, [h, w], {height, width}); else None."""
    if type(value) is int and value > 0:
        return value, value
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int and v > 0 for v in value):
        return value[0], value[1]
    if (
        isinstance(value, dict)
        and set(value) == {"height", "width"}
        and all(type(v) is int and v > 0 for v in value.values())
    ):
        return value["height"], value["width"]
    return None


def _resized(value: Any, res: Size, crop: tuple[int, int] | None, what: str, square: bool) -> Any:
    """`value` with every number n made the side of `res` it stands for, or, given the `crop` it
    is cropped to, scaled by res / crop on that side (n == crop: res). `square`: one number is read
    as a square, so a non-square `res` is written {"height", "width"}."""

    def new(n: int, side: int) -> int:
        if crop is None or n == crop[side]:
            return res.sides[side]
        return max(1, round(n * res.sides[side] / crop[side]))

    def one_number() -> None:
        if not res.is_square:
            raise InputError(
                f"{what} {json.dumps(value)}, one number, which cannot state {res.px}; give that file "
                '{"height": H, "width": W} sizes, or convert to a square size'
            )

    if isinstance(value, bool):
        raise InputError(f"{what} {value!r}, which is not a size")
    if isinstance(value, int):
        if square and not res.is_square:
            return {"height": new(value, 0), "width": new(value, 1)}
        one_number()
        return new(value, 0)
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
        return [new(v, i) for i, v in enumerate(value)]
    if isinstance(value, dict) and value and all(k in SIZE_DICT_KEYS and type(v) is int for k, v in value.items()):
        if "shortest_edge" in value and "longest_edge" in value:
            raise InputError(
                f"{what} {json.dumps(value)}: with both shortest_edge and longest_edge the new sizes are "
                "a choice xcr will not guess; set that file's sizes by hand"
            )
        if "shortest_edge" in value or "longest_edge" in value:
            one_number()
        return {k: new(v, 1 if k == "width" else 0) for k, v in value.items()}
    raise InputError(
        f"{what} {json.dumps(value)}; expected an int, [h, w], "
        '{"shortest_edge": n}, {"longest_edge": n} or {"height": n, "width": n}'
    )
