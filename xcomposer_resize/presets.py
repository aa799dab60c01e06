"""The InternLM-XComposer variants and the vision-tower resolution each runs at: one table.

Facts from the XComposer repositories (see docs/xcomposer.md): the 2.0 models build their tower on
openai/clip-vit-large-patch14-336 and resize it in process (`resize_pos`) to their input size; 4KHD
keeps 336 px and tiles the image; 2.5 (and OmniLive) ship their own CLIP-L/14 already at 560 px.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError, arg

DEFAULT_MODEL = "openai/clip-vit-large-patch14-336"
PATCH = 14


@dataclass(frozen=True)
class Preset:
    """A model's vision tower: its input size, where it comes from, and whether xcr has work to do."""

    name: str
    res: int
    source: str
    note: str
    convert: bool = True  # False: the model runs the source as it is; nothing to write

    @property
    def grid(self) -> int:
        return self.res // PATCH


PRESETS = (
    Preset(
        "internlm-xcomposer2-7b",
        224,
        DEFAULT_MODEL,
        "XComposer2 7B runs its CLIP-L/14 at 224 px (16×16); its resize_pos does this in process at every load",
    ),
    Preset(
        "internlm-xcomposer2-vl-7b",
        490,
        DEFAULT_MODEL,
        "XComposer2 VL 7B runs its CLIP-L/14 at 490 px (35×35); its resize_pos does this in process at every load",
    ),
    Preset(
        "internlm-xcomposer2-4khd-7b",
        336,
        DEFAULT_MODEL,
        "XComposer2 4KHD runs the tower at 336 px and reaches high resolution by tiling 336-px crops "
        "(hd_num): a 336-px source needs no conversion",
        convert=False,
    ),
    Preset(
        "internlm-xcomposer2d5-7b",
        560,
        DEFAULT_MODEL,
        "XComposer2.5 uses its own CLIP-L/14 already at 560 px (internlm/internlm-xcomposer2d5-clip); "
        "resizing the 336-px source to 560 is for experiments",
    ),
    Preset(
        "internlm-xcomposer2d5-ol-7b",
        560,
        DEFAULT_MODEL,
        "XComposer2.5 OmniLive uses its own CLIP-L/14 already at 560 px; resizing the 336-px source to 560 "
        "is for experiments",
    ),
)


def preset(name: str) -> Preset:
    """The preset called `name`, or a UsageError listing the ones there are."""
    for p in PRESETS:
        if p.name == name:
            return p
    raise UsageError(f"{arg('preset', name)} is not a preset; choose one of {', '.join(p.name for p in PRESETS)}")


def as_json() -> list[dict[str, object]]:
    """`xcr presets --json`: one object per preset."""
    return [
        {
            "name": p.name,
            "res": p.res,
            "grid": [p.grid, p.grid],
            "source": p.source,
            "convert": p.convert,
            "note": p.note,
        }  # fmt: skip
        for p in PRESETS
    ]
