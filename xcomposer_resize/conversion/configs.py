"""config.json and processor-file rewrites, and the model card. Plain dicts and text; no files."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..families import Family
from ..size import Grid, Size, grid_text
from ..text import readable

# Processor files that may state an image size, as transformers names them: the image processor's
# own file, and the processor file that transformers 5 writes with a nested `image_processor` block
# (and reads before preprocessor_config.json).
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
SIZE_KEYS = ("size", "crop_size")
SIZE_DICT_KEYS = ("shortest_edge", "longest_edge", "height", "width")


@dataclass(frozen=True)
class VisionSizes:
    """What the config says about the vision tower: input size and patch size in pixels.

    `missing` names the keys config.json leaves out, for which transformers' defaults apply.
    """

    image_size: Size
    patch_size: int
    missing: tuple[str, ...] = ()  # keys config.json leaves out, whose defaults apply

    @property
    def grid(self) -> Grid:
        return self.image_size.grid(self.patch_size)

    @property
    def stated(self) -> bool:
        return not self.missing

    def with_kernel(self, family: Family, kernel: int | None) -> VisionSizes:
        """These sizes with the patch size the weights' patch embedding `kernel` has, for a family
        that takes it from there (timm) when the config leaves it out; else these sizes."""
        if not (family.patch_from_weights and "patch_size" in self.missing and kernel):
            return self
        return VisionSizes(self.image_size, kernel, tuple(k for k in self.missing if k != "patch_size"))


def vision_sizes(config: dict[str, Any], family: Family) -> VisionSizes:
    """Read image_size/patch_size of the vision tower; every block that states them must agree.

    A key no block states takes the family's default, as transformers does (CLIP: 224 px, patch 32).
    """
    stated = family.stated_sizes(config)
    if stated is not None:
        image, patch = stated
    else:
        blocks = family.vision_config_blocks(config)
        if not blocks:
            raise InputError(f"config.json has no vision_config; is this a {family.name} checkpoint?")
        side = _agreed(blocks, "image_size", pair=not family.square_only)
        image = side if side is None or isinstance(side, Size) else Size.square(side)
        stated_patch = _agreed(blocks, "patch_size")
        assert stated_patch is None or isinstance(stated_patch, int)
        patch = stated_patch
    missing = tuple(k for k, v in (("image_size", image), ("patch_size", patch)) if v is None)
    image = image if image is not None else Size.square(family.default_image_size)
    patch = patch if patch is not None else family.default_patch_size
    if min(image.sides) < patch:  # a size that is not a multiple is fine (SigLIP-so400m: 384 px, 14-px patches)
        said = f"does not state {' and '.join(missing)}, so transformers assumes" if missing else "says"
        raise InputError(
            f"config.json {said} image_size {image}, which is smaller than one patch ({patch} px); "
            "fix its vision config"
        )
    return VisionSizes(image, patch, missing)


def _agreed(blocks: list[dict[str, Any]], key: str, pair: bool = False) -> int | Size | None:
    """The value every block that states `key` gives: a positive int, or with `pair` also [h, w]."""
    values = {json.dumps(b[key]) for b in blocks if key in b}
    if len(values) > 1:
        raise InputError(f"config.json gives two different vision {key} values: [{', '.join(sorted(values))}]")
    if not values:
        return None
    value = json.loads(values.pop())
    if type(value) is int and value > 0:
        return value
    size = Size.from_json(value) if pair else None
    if size is None:
        raise InputError(
            f"config.json has vision {key} {value!r}, not a positive integer" + (" or [H, W]" if pair else "")
        )
    return size


def rewrite_config(config: dict[str, Any], family: Family, sizes: VisionSizes, res: Size) -> dict[str, Any]:
    """A copy of `config` with the vision image_size set to `res` in every block that holds the
    vision sizes (vision_config, the legacy vision_config_dict that overrides it, or the top level
    of a vision-only config).

    The key is set even where it was absent, and patch_size is stated where it was missing:
    transformers fills a key missing from vision_config_dict with the class default (224 px,
    patch 32) and lets that override vision_config.
    """
    out = copy.deepcopy(config)
    family.set_size(out, res, sizes.patch_size)
    return out


DTYPE_KEYS = ("torch_dtype", "dtype")  # transformers 4 writes the first, 5 the second (and reads both)


def set_dtype(config: dict[str, Any], dtype: str) -> dict[str, Any]:
    """A copy of `config` that states `dtype` ("float16", ...) wherever it states a dtype (the top
    level and the sub-configs that give one); at the top level at least, as `torch_dtype`."""
    out = copy.deepcopy(config)
    blocks = [out, *(v for v in out.values() if isinstance(v, dict))]
    for block in blocks:
        for key in DTYPE_KEYS:
            if block.get(key) is not None:
                block[key] = dtype
    if not any(out.get(key) for key in DTYPE_KEYS):
        out["torch_dtype"] = dtype
    return out


# Image processors that read a one-number `size` as a square (transformers' get_size_dict with
# default_to_square); the others (CLIP, BiT) read it as the shortest edge. `crop_size` is a square
# in every processor.
SQUARE_SIZE_PROCESSORS = ("ViTImageProcessor", "ViTImageProcessorFast", "ViTFeatureExtractor")


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
    for where, block in _size_blocks(out):
        crop = block.get("crop_size") if block.get("do_center_crop", True) is not False else None
        crop_sides = _sides(crop) if crop is not None else None
        square_ints = any(
            block.get(k) in SQUARE_SIZE_PROCESSORS for k in ("image_processor_type", "feature_extractor_type")
        )
        for key in SIZE_KEYS:
            if block.get(key) is not None:
                scale = crop_sides if key == "size" else None
                square = key == "crop_size" or square_ints
                block[key] = _resized(block[key], res, scale, f"{filename} has {where}{key}", square)
    return out


def _size_blocks(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    blocks = [("", data)]
    for key, value in data.items():
        if key.endswith("processor") and isinstance(value, dict):
            blocks.append((f"{key}.", value))
    return blocks


def _sides(value: Any) -> tuple[int, int] | None:
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


def dump_json(data: dict[str, Any]) -> bytes:
    """JSON as transformers writes it: 2-space indent, key order kept, trailing newline. Text that
    UTF-8 cannot hold (a lone surrogate from a `\\ud800` escape) is written escaped, as it came."""
    try:
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
    except UnicodeEncodeError:
        return (json.dumps(data, indent=2, ensure_ascii=True) + "\n").encode()


# ---------------------------------------------------------------- the model card

# Front-matter keys of the source's card that still hold for the resized checkpoint: who may use
# it and how (license, gating), what it is about (language, datasets, tags, task, library).
# Dropped: evaluation results (model-index, metrics, co2_eq_emissions) and lineage (base_model,
# base_model_relation, new_version), which describe the source, not this checkpoint.
KEPT_METADATA = ("license", "license_name", "license_link", "language", "datasets", "tags", "library_name",
                 "pipeline_tag", "thumbnail", "widget")  # fmt: skip
KEPT_METADATA_PREFIXES = ("extra_gated_",)
OUR_TAGS = ("xcomposer-resize",)
SOURCE_CARD = "## The source's model card"


@dataclass(frozen=True)
class CardInfo:
    """What the model card records."""

    source: str  # repo id, or the source folder's name
    repo_id: str | None
    revision: str | None
    old_res: Size
    new_res: Size
    old_grid: Grid
    new_grid: Grid
    patch_size: int
    mode: str
    antialias: bool
    tensors: tuple[str, ...]
    version: str
    vision_only: bool = False  # the output holds the vision tower only
    architecture: str | None = None  # of a vision-only output
    dtype: str | None = None  # a dtype every floating tensor was cast to (None: kept)
    source_dtype: str | None = None
    record: dict[str, Any] | None = None  # what made the output (record.py), in the front matter
    family: str = "CLIP"
    library: str = "transformers"
    config_file: str = "config.json"
    processors: bool = True  # the output has processor files

    @property
    def loader(self) -> str:
        """What loads the checkpoint, in the card's words."""
        return {"transformers": "`from_pretrained`", "timm": "`timm.create_model`"}.get(
            self.library, f"`{self.library}`"
        )

    prefix: int = 1  # rows before the grid, copied unchanged
    runtime: str = "InternLM-XComposer's `resize_pos` and transformers' `interpolate_pos_encoding`"


@dataclass(frozen=True)
class SourceCard:
    """The source's README.md, split into its YAML front matter and its text; `problem` says why
    front matter that is there could not be used."""

    metadata: dict[str, Any]
    body: str
    problem: str | None = None


MAX_FRONT_MATTER = 64 << 10  # front matter larger than this is kept as text, not parsed


def parse_card(text: str) -> SourceCard:
    """Split a model card into front matter and body. Front matter that is not a plain YAML mapping
    (unparsable, too large, with aliases, of values JSON cannot hold) is not used: the whole card is
    then kept as text. Values are made plain (sets sorted, dates as text) so the output is
    deterministic."""
    if text.startswith(("---\n", "---\r\n")):
        end = text.find("\n---", 3)
        if end != -1:
            after = text.find("\n", end + 4)
            body = text[after + 1 :] if after != -1 else ""
            if end > MAX_FRONT_MATTER:
                return SourceCard({}, text, f"it is over {MAX_FRONT_MATTER >> 10} KiB")
            meta, problem = _front_matter(text[4:end])
            if meta is not None:
                return SourceCard(meta, body)
            return SourceCard({}, text, problem)
    return SourceCard({}, text)


def _front_matter(text: str) -> tuple[dict[str, Any] | None, str]:
    import yaml

    class NoAliases(yaml.SafeLoader):  # an alias can expand a tiny card into gigabytes
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError("aliases are not accepted")
            return super().compose_node(parent, index)

    try:
        meta = yaml.load(text, Loader=NoAliases)  # a SafeLoader: builds plain data only
        if not isinstance(meta, dict):
            return None, "it is not a YAML mapping"
        plain = json.loads(json.dumps(meta, default=_plain, sort_keys=False))
    except yaml.YAMLError as e:
        return None, f"it is not valid YAML: {' '.join(str(e).split())[:80]}"
    except Exception as e:  # dates like 2024-13-45, deep nesting, keys JSON cannot hold
        return None, f"it holds values xcr does not carry over ({type(e).__name__})"
    return plain, ""


def _plain(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not plain metadata")


def method_text(mode: str, antialias: bool) -> str:
    """How the table was resampled, in the words of F.interpolate's arguments."""
    if mode in ("bicubic", "bilinear"):
        return f"{mode}, align_corners=False" + (", antialias" if antialias else "")
    return mode


def model_card(info: CardInfo, source: SourceCard | None = None) -> str:
    """README.md for the output: Hugging Face YAML metadata inherited from the source's card where
    it still holds, what was done, what made it (the record, last in the front matter), and the
    source's card below. Deterministic."""
    import yaml

    meta: dict[str, Any] = {}
    for key, value in (source.metadata if source else {}).items():
        if key in KEPT_METADATA or key.startswith(KEPT_METADATA_PREFIXES):
            meta[key] = value
    if info.repo_id:
        meta["base_model"] = info.repo_id
        meta["base_model_relation"] = "finetune"  # weights changed; the Hub's other relations are
        # adapter, merge and quantized, none of which this is
    meta.setdefault("library_name", info.library)
    meta.setdefault(
        "pipeline_tag", "image-feature-extraction" if info.vision_only else "zero-shot-image-classification"
    )
    prefix = {0: "no prefix rows", 1: "class token copied"}.get(info.prefix, f"{info.prefix} prefix rows copied")
    tags = meta.get("tags")
    tags = [str(t) for t in tags] if isinstance(tags, list) else ([str(tags)] if tags else [])
    tags = [t for t in tags if not re.fullmatch(r"[0-9]+(x[0-9]+)?px", t)]  # an earlier xcr output's size
    for tag in (info.family.split()[0].lower(), "vision", *OUR_TAGS, f"{info.new_res}px"):  # 490px, 448x672px
        if tag not in tags:
            tags.append(tag)
    meta["tags"] = tags
    if info.record is not None:
        meta["xcomposer_resize"] = info.record
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)

    revision = f" at revision `{info.revision}`" if info.revision else ""
    info = dataclasses.replace(info, source=readable(info.source))
    lines = [
        "---",
        front.rstrip("\n"),
        "---",
        "",
        f"# {info.source} at {info.new_res.px}",
        "",
        f"This is `{info.source}`{revision} with its vision position embeddings resampled from a "
        f"{grid_text(info.old_grid)} grid ({info.old_res.px}) to a {grid_text(info.new_grid)} grid "
        f"({info.new_res.px}, patch size {info.patch_size}), ready for fine-tuning at {info.new_res.px}.",
        "",
        "| | |",
        "| --- | --- |",
        f"| source | `{info.source}`{revision} |",
        f"| resolution | {info.old_res.px} → {info.new_res.px} |",
        f"| grid | {grid_text(info.old_grid)} → {grid_text(info.new_grid)} |",
        f"| method | {method_text(info.mode, info.antialias)}; {prefix}; float32 compute |",
        f"| tensors rewritten | {', '.join(f'`{t}`' for t in info.tensors) or 'none'} |",
        *(
            [f"| tower | the vision tower only (`{info.architecture}`) |"]
            if info.vision_only and info.architecture
            else []
        ),
        *([f"| dtype | every floating tensor cast to {info.dtype} (from {info.source_dtype}) |"] if info.dtype else []),
        f"| tool | xcomposer-resize {info.version} |",
        "",
        (
            "Every other tensor is byte-identical to the source. "
            if not info.dtype
            else "Every other tensor holds the source's values, cast as `tensor.to(dtype)` casts them. "
        )
        + f"`{info.config_file}`"
        + (" and the processor files state" if info.processors else " states")
        + f" the new resolution, so {info.loader} loads it at {info.new_res.px} with no edits. "
        + (
            f"With the default method the position table equals what {info.runtime} computes at run time."
            if info.old_grid[0] == info.old_grid[1]
            else f"The source's grid is not square, which {info.runtime} does not read at run time: the table was "
            f"resampled with `F.interpolate(size={info.new_grid})` as it resamples a square one."
        ),
        "",
    ]
    body = source.body.strip("\n") if source else ""
    if source and "xcomposer_resize" in source.metadata and SOURCE_CARD in body:  # an xcr output as the source
        body = body.split(SOURCE_CARD, 1)[1].strip("\n")  # its source's card, not a card nested in a card
    if info.repo_id:
        url = f"https://huggingface.co/{info.repo_id}"
        below = "; it is reproduced below" if body.strip() else ""
        lines += [f"The source's own model card: [{info.repo_id}]({url}){below}.", ""]
    if body.strip():
        lines += [SOURCE_CARD, "", body, ""]
    return readable("\n".join(lines))
