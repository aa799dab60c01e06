"""The model config: the vision sizes it states, and the copy an output gets. Plain dicts; no files."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..families import Family
from ..size import Grid, Size


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


class _Missing:
    """A key one side of a comparison lacks."""

    def __repr__(self) -> str:
        return "(none)"


MISSING: Any = _Missing()
Path_ = tuple[str, ...]  # a key path in a JSON object: ("vision_config", "image_size")


def diff(a: Any, b: Any, path: Path_ = ()) -> list[tuple[Path_, Any, Any]]:
    """Where the JSON values `a` (expected) and `b` differ: (key path, a's value, b's), MISSING for
    a key one side lacks; objects are compared key by key, down to their leaves (an object one side
    lacks, by its keys), anything else as JSON (1, 1.0 and true differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [*a, *(k for k in b if k not in a)]
        return [d for k in keys for d in diff(a.get(k, MISSING), b.get(k, MISSING), (*path, str(k)))]
    if a is MISSING and isinstance(b, dict) and b:
        return diff({}, b, path)
    if b is MISSING and isinstance(a, dict) and a:
        return diff(a, {}, path)
    return [] if same_json(a, b) else [(path, a, b)]


def same_json(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def changed(old: Any, new: Any) -> dict[str, list[Any]]:
    """`diff` by dotted key, [before, after]: {"vision_config.image_size": [336, 490]}; null for a side
    without the key."""
    return {".".join(p): [None if a is MISSING else a, None if b is MISSING else b] for p, a, b in diff(old, new)}


def changed_lines(old: str, new: str) -> dict[str, list[str]]:
    """The lines a code rewrite changed in place: {"line 72": ["new_size = 24", "new_size = 35"]}."""
    pairs = zip(old.splitlines(), new.splitlines(), strict=False)
    return {f"line {i}": [a.strip(), b.strip()] for i, (a, b) in enumerate(pairs, 1) if a != b}


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


def dump_json(data: dict[str, Any]) -> bytes:
    """JSON as transformers writes it: 2-space indent, key order kept, trailing newline. Text that
    UTF-8 cannot hold (a lone surrogate from a `\\ud800` escape) is written escaped, as it came."""
    try:
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
    except UnicodeEncodeError:
        return (json.dumps(data, indent=2, ensure_ascii=True) + "\n").encode()
