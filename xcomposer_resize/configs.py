"""config.json / preprocessor_config.json rewrites and the model card. Plain dicts and text."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .families import Family


@dataclass(frozen=True)
class VisionSizes:
    """What the config says about the vision tower: input size and patch size in pixels."""

    image_size: int
    patch_size: int

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def vision_sizes(config: dict[str, Any], family: Family) -> VisionSizes:
    """Read image_size/patch_size of the vision tower; every block that has them must agree."""
    blocks = family.vision_config_blocks(config)
    if not blocks:
        raise InputError("config.json has no vision_config; is this a CLIP checkpoint?")
    image = _agreed(blocks, "image_size")
    patch = _agreed(blocks, "patch_size")
    if image is None or patch is None:
        raise InputError("config.json does not give the vision tower's image_size and patch_size")
    if image % patch:
        raise InputError(f"config.json says image_size {image}, which is not a multiple of patch_size {patch}")
    return VisionSizes(image, patch)


def _agreed(blocks: list[dict[str, Any]], key: str) -> int | None:
    values = {b[key] for b in blocks if key in b}
    if len(values) > 1:
        raise InputError(f"config.json gives two different vision {key} values: {sorted(values)}")
    if not values:
        return None
    (value,) = values
    if type(value) is not int or value <= 0:
        raise InputError(f"config.json has vision {key} {value!r}, not a positive integer")
    return value


def rewrite_config(config: dict[str, Any], family: Family, res: int) -> dict[str, Any]:
    """A copy of `config` with the vision image_size set to `res` wherever it is stated
    (vision_config, the legacy vision_config_dict that overrides it, or the top level of a
    vision-only config)."""
    out = copy.deepcopy(config)
    for block in family.vision_config_blocks(out):
        # set it even where it was absent: transformers fills a missing key of
        # vision_config_dict with the class default (224) and lets that override vision_config
        block["image_size"] = res
    return out


def rewrite_preprocessor(pre: dict[str, Any], res: int) -> dict[str, Any]:
    """A copy with `crop_size` and `size` set to `res`, each in the form it had
    (int, {"shortest_edge": n}, {"height": n, "width": n})."""
    out = copy.deepcopy(pre)
    for key in ("crop_size", "size"):
        value = out.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            raise InputError(f"preprocessor_config.json has {key} {value!r}, not a size")
        if isinstance(value, int):
            out[key] = res
        elif isinstance(value, dict) and value and all(k in ("shortest_edge", "height", "width") for k in value):
            out[key] = {k: res for k in value}
        else:
            raise InputError(
                f"preprocessor_config.json has {key} {value!r}; expected an int, "
                '{"shortest_edge": n} or {"height": n, "width": n}'
            )
    return out


def dump_json(data: dict[str, Any]) -> bytes:
    """JSON as transformers writes it: 2-space indent, key order kept, trailing newline."""
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


@dataclass(frozen=True)
class CardInfo:
    """What the model card records."""

    source: str  # repo id, or the source folder's name
    repo_id: str | None
    revision: str | None
    old_res: int
    new_res: int
    old_grid: int
    new_grid: int
    patch_size: int
    mode: str
    antialias: bool
    tensors: tuple[str, ...]
    version: str


def model_card(info: CardInfo) -> str:
    """README.md for the output: Hugging Face YAML metadata and what was done. Deterministic."""
    meta = ["---"]
    if info.repo_id:
        meta.append(f"base_model: {info.repo_id}")
    meta += [
        "library_name: transformers",
        "pipeline_tag: zero-shot-image-classification",
        "tags:",
        "- clip",
        "- vision",
        "- xcomposer-resize",
        f"- {info.new_res}px",
        "---",
    ]
    method = f"{info.mode}, align_corners=False" + (", antialias" if info.antialias else "")
    revision = f" at revision `{info.revision}`" if info.revision else ""
    lines = [
        *meta,
        "",
        f"# {info.source} at {info.new_res} px",
        "",
        f"This is `{info.source}`{revision} with its vision position embeddings resampled from a "
        f"{info.old_grid}×{info.old_grid} grid ({info.old_res} px) to a {info.new_grid}×{info.new_grid} grid "
        f"({info.new_res} px, patch size {info.patch_size}), ready for fine-tuning at {info.new_res} px.",
        "",
        "| | |",
        "| --- | --- |",
        f"| source | `{info.source}`{revision} |",
        f"| resolution | {info.old_res} px → {info.new_res} px |",
        f"| grid | {info.old_grid}×{info.old_grid} → {info.new_grid}×{info.new_grid} |",
        f"| method | {method}; class token copied; float32 compute |",
        f"| tensors rewritten | {', '.join(f'`{t}`' for t in info.tensors) or 'none'} |",
        f"| tool | xcomposer-resize {info.version} |",
        "",
        "Every other tensor is byte-identical to the source. `config.json` and "
        "`preprocessor_config.json` state the new resolution, so `from_pretrained` loads it at "
        f"{info.new_res} px with no edits. With the default method the position table equals what "
        "InternLM-XComposer's `resize_pos` and transformers' `interpolate_pos_encoding` compute.",
        "",
    ]
    return "\n".join(lines)
