"""Model-family knowledge, kept in one place: one adapter per family, and the table of them.

Every difference between families is an attribute or a hook of its adapter (base.py): which
tensor is the table, where the config states the sizes, which files a checkpoint has, how its
processor files are rewritten, what a vision-only output is, the default interpolation. The
conversion, the commands and the CLI ask the adapter and never name a family. This module holds
the table (FAMILIES), detection from a folder's config, the file names the table implies, and the
words help texts use.

Adding a transformers ViT family is one `TransformersFamily` in transformers.py and its place in
FAMILIES; another library's layout is a subclass of `Family` in a module of its own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..checkpoint.weights import CONFIG, read_json
from ..errors import InputError, UsageError, XcrError, arg
from .base import Family
from .open_clip import OPEN_CLIP, OpenClipFamily
from .timm import TIMM, TIMM_SIZES, TOKEN_NAMES, TimmFamily, listed, timm_arch, timm_name_patch
from .transformers import (
    CLIP,
    DINOV2,
    DINOV2_REGISTERS,
    PROCESSOR_FILES,
    SIGLIP,
    TRANSFORMERS,
    VIT,
    TransformersFamily,
)
from .vlm import INTERNVIT, VLMS, VlmFamily

__all__ = [
    "CLIP", "DINOV2", "DINOV2_REGISTERS", "FAMILIES", "INTERNVIT", "NAMES", "OPEN_CLIP", "PROCESSOR_FILES", "REFUSED", "SIGLIP",
    "TIMM", "TIMM_SIZES", "TOKEN_NAMES", "TRANSFORMERS", "VIT", "VLMS", "Family", "VlmFamily", "OpenClipFamily", "TimmFamily", "TransformersFamily",
    "timm_arch", "timm_name_patch",
]  # fmt: skip

FAMILIES: tuple[Family, ...] = (*TRANSFORMERS, INTERNVIT, *VLMS, TIMM, OPEN_CLIP)
NAMES = {re.sub(r"[ _]", "-", f.name.lower().replace(" with registers", "-registers")): f for f in FAMILIES}

# the files that hold a model config, in the order a folder with several is read (transformers and
# timm, then open_clip), and every family's weight files
CONFIG_FILES = tuple(dict.fromkeys(f.config_file for f in FAMILIES))
WEIGHT_FILES = tuple(dict.fromkeys(name for f in FAMILIES for name in f.weight_files))
# the weight files of a model (any of the above, their shards, and other frameworks'), as opposed to
# what a Trainer or PEFT saves beside them (optimizer.pt, training_args.bin, adapter_model.safetensors)
_SHARDS = re.compile(r"(model|pytorch_model)-[0-9]{5}-of-[0-9]{5}\.(safetensors|bin)")
OTHER_FRAMEWORKS = ("tf_model.h5", "flax_model.msgpack")

_NAFLEX = (
    "a SigLIP2 NaFlex model, which resizes its position table for every image, to that image's own "
    "patch grid, at run time: there is no fixed size to convert it to (the fixed-resolution SigLIP2 "
    "checkpoints have model_type siglip, and xcr converts those)"
)

_ROTARY = "has no absolute position table (its vision tower uses rotary positions): any size already works, there is nothing to convert"
_BUCKETS = ("indexes its SigLIP position table through NaViT-style bucketed coordinates: any image size already "
            "works without interpolation, and its processor fixes the token count")  # fmt: skip
_TILES = "tiles every image at 336 px in its own code (its tower never sees another size): nothing a checkpoint conversion can change"

# model types xcr recognises and refuses, with the reason
REFUSED = {
    "siglip2": _NAFLEX,
    "siglip2_vision_model": _NAFLEX,
    "qwen2_vl": f"Qwen2-VL {_ROTARY}",
    "qwen2_5_vl": f"Qwen2.5-VL {_ROTARY}",
    "idefics2": f"Idefics2 {_BUCKETS}",
    "idefics3": f"Idefics3 {_BUCKETS}",
    "smolvlm": f"SmolVLM {_BUCKETS}",
    "minicpmv": f"MiniCPM-V {_BUCKETS}",
    "phi3_v": f"Phi-3-vision {_TILES}",
}


def is_model_weights(name: str) -> bool:
    """True for the file name of a model's own weights, in any library's naming."""
    return name in WEIGHT_FILES or name in OTHER_FRAMEWORKS or _SHARDS.fullmatch(name) is not None


def family_named(name: str) -> Family:
    """The family called `name` (`--family`), case-insensitively."""
    key = name.strip().lower()
    found = NAMES.get(key.replace("_", "-")) or next((f for f in FAMILIES if f.name.lower() == key), None)
    if found is None:
        raise UsageError(f"{arg('family', name)} is not a family xcr knows; use one of {', '.join(NAMES)}")
    return found


def family_for(config: dict[str, Any], name: str | None = None) -> Family:
    """The family of a model config (or the one `name` forces), or an InputError naming what was
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
    types = [t for f in FAMILIES if isinstance(f, TransformersFamily) for t in f.type_words]
    supported = ", ".join(types) + ", and timm's and open_clip's hub layouts"
    found = f"model_type {model_type!r}" if model_type else "no model_type"
    raise InputError(
        f"config.json has {found}; xcr converts the vision towers of {supported} "
        f"(if this is one of them, name it with {arg('family')} {'|'.join(NAMES)})"
    )


def config_name(names: list[str] | set[str], prefer: str | None = None) -> str | None:
    """The model config among file names: `prefer` when there, else the first of CONFIG_FILES."""
    present = set(names)
    return next((n for n in (prefer, *CONFIG_FILES) if n in present), None)


def model_config(folder: Path, forced: str | None = None) -> tuple[str, dict[str, Any], Family]:
    """The model config of a checkpoint folder: its file name, its content and its family (the
    one `forced` names, as `--family`)."""
    prefer = family_named(forced).config_file if forced else None
    name = config_name([n for n in CONFIG_FILES if os.path.lexists(folder / n)], prefer) or CONFIG
    config = read_json(folder / name)  # none at all: "FOLDER has no config.json"
    return name, config, family_for(config, forced)


def detect(folder: Path, forced: str | None = None, recorded: object = None) -> tuple[str, dict[str, Any], Family]:
    """`model_config` of a checkpoint folder; when its config names no family xcr knows and the
    folder is an xcr output whose record names one (`recorded`: an output made with --family keeps
    its source's config), that family."""
    try:
        return model_config(folder, forced)
    except XcrError as e:
        if forced is not None or recorded is None:
            raise
        first = e
    said = f"{folder}'s model card records the family {recorded!r}"
    try:
        known = isinstance(recorded, str) and family_named(recorded) is not None
    except XcrError:
        known = False
    if not known:
        raise InputError(f"{said}, which is not a family xcr knows; {first.message}") from None
    try:
        found = model_config(folder, str(recorded))
    except XcrError as e:
        raise InputError(f"{said}, but {e.message}") from None
    if not (folder / found[2].config_file).is_file():
        raise InputError(f"{said}, but the folder has no {found[2].config_file}; {first.message}") from None
    return found


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
    """The families whose checkpoints take HxW sizes: `ViT, timm and open_clip (not its timm trunks)`."""
    return listed([f.name + (f" ({f.square_too})" if f.square_too else "") for f in FAMILIES if not f.square_only])


def method_words() -> tuple[str, str]:
    """(mode, antialias) defaults in words: `bicubic for every family`; `on for …; off for the others`
    (a VLM's is its tower's)."""
    modes = {f.mode for f in FAMILIES}
    mode = f"{modes.pop()} for every family" if len(modes) == 1 else "; ".join(f"{f.name}: {f.mode}" for f in FAMILIES)
    on = [f.name for f in FAMILIES if f.antialias]
    return mode, f"on for {', '.join(on)}; off for the others"
