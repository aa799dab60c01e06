"""The output's model card: the source's metadata that still holds, what was done, and the record.

Plain text and dicts; no files. The record itself (what made the output) is record.py's.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

from ..size import Grid, Size, grid_text
from ..text import readable

# Front-matter keys of the source's card that still hold for the resized checkpoint: who may use
# it and how (license, gating), what it is about (language, datasets, tags, task, library).
# Dropped: evaluation results (model-index, metrics, co2_eq_emissions) and lineage (base_model,
# base_model_relation, new_version), which describe the source, not this checkpoint.
KEPT_METADATA = ("license", "license_name", "license_link", "language", "datasets", "tags", "library_name",
                 "pipeline_tag", "thumbnail", "widget")  # fmt: skip
CARD = "README.md"  # the model card, of the source and of the output
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
    pipeline: str = "zero-shot-image-classification"  # the Hub's task of a whole checkpoint of the family
    loader: str = "`from_pretrained`"  # what loads the checkpoint, in the card's words
    config_file: str = "config.json"
    processors: bool = True  # the output has processor files

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


def _metadata(info: CardInfo, source: SourceCard | None) -> dict[str, Any]:
    """The card's YAML front matter: the source's metadata that still holds, then ours."""
    meta: dict[str, Any] = {}
    for key, value in (source.metadata if source else {}).items():
        if key in KEPT_METADATA or key.startswith(KEPT_METADATA_PREFIXES):
            meta[key] = value
    if info.repo_id:
        meta["base_model"] = info.repo_id
        meta["base_model_relation"] = "finetune"  # weights changed; the Hub's other relations are
        # adapter, merge and quantized, none of which this is
    meta.setdefault("library_name", info.library)
    meta.setdefault("pipeline_tag", "image-feature-extraction" if info.vision_only else info.pipeline)
    tags = meta.get("tags")
    tags = [str(t) for t in tags] if isinstance(tags, list) else ([str(tags)] if tags else [])
    tags = [t for t in tags if not re.fullmatch(r"[0-9]+(x[0-9]+)?px", t)]  # an earlier xcr output's size
    for tag in (info.family.split()[0].lower(), "vision", *OUR_TAGS, f"{info.new_res}px"):  # 490px, 448x672px
        if tag not in tags:
            tags.append(tag)
    meta["tags"] = tags
    if info.record is not None:
        meta["xcomposer_resize"] = info.record
    return meta


def model_card(info: CardInfo, source: SourceCard | None = None) -> str:
    """README.md for the output: Hugging Face YAML metadata inherited from the source's card where
    it still holds, what was done, what made it (the record, last in the front matter), and the
    source's card below. Deterministic."""
    import yaml

    front = yaml.safe_dump(
        _metadata(info, source), sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000
    )

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
        *_table(info, revision),
        "",
        _what_loads(info),
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


def _table(info: CardInfo, revision: str) -> list[str]:
    """The card's table of what was done."""
    prefix = {0: "no prefix rows", 1: "class token copied"}.get(info.prefix, f"{info.prefix} prefix rows copied")
    tower = info.vision_only and info.architecture
    return [
        "| | |",
        "| --- | --- |",
        f"| source | `{info.source}`{revision} |",
        f"| resolution | {info.old_res.px} → {info.new_res.px} |",
        f"| grid | {grid_text(info.old_grid)} → {grid_text(info.new_grid)} |",
        f"| method | {method_text(info.mode, info.antialias)}; {prefix}; float32 compute |",
        f"| tensors rewritten | {', '.join(f'`{t}`' for t in info.tensors) or 'none'} |",
        *([f"| tower | the vision tower only (`{info.architecture}`) |"] if tower else []),
        *([f"| dtype | every floating tensor cast to {info.dtype} (from {info.source_dtype}) |"] if info.dtype else []),
        f"| tool | xcomposer-resize {info.version} |",
    ]


def _what_loads(info: CardInfo) -> str:
    """The card's paragraph on what the output holds and what loads it."""
    return (
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
        )
    )
