"""One conversion request as one value, built and validated once, from the CLI or a Python call.

Only what can be checked without the source is checked here (types, names, signs); what needs
the source's config (multiples of the patch size, the size of the table) is checked in convert.
Messages spell arguments the caller's way (`errors.arg`).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import UsageError, arg
from .interpolate import ANTIALIAS_MODES, MODES
from .presets import DEFAULT_MODEL, Preset
from .presets import preset as find_preset

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("keep", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Options:
    """What to convert, to which resolutions, where, and how."""

    model: str
    resolutions: tuple[int, ...]
    out: str | None  # as given (`~` not yet expanded; may hold `{res}`); None: a name derived from the source's
    force: bool = False
    device: str = "cpu"
    mode: str = "bicubic"
    antialias: bool = False
    revision: str | None = None
    token: str | None = None
    dtype: str = "keep"  # every floating tensor of the output: keep, float32, float16 or bfloat16
    vision_only: bool = False  # only the vision tower, with a vision config at the top level
    with_projection: bool = False  # with vision_only: keep visual_projection (CLIPVisionModelWithProjection)
    fsync: bool = False  # flush every file and the folder to the disk before and after landing
    notes: tuple[str, ...] = ()  # what the presets say

    def out_for(self, res: int) -> str | None:
        """The output folder for `res`: `out` with `{res}` filled in."""
        return None if self.out is None else self.out.replace("{res}", str(res))


def build_options(
    model: object = None,
    res: object = None,
    out: object = None,
    *,
    preset: object = None,
    force: object = False,
    device: object = "cpu",
    mode: object = "bicubic",
    antialias: object = False,
    revision: object = None,
    token: object = None,
    dtype: object = "keep",
    vision_only: object = False,
    with_projection: object = False,
    fsync: object = False,
) -> Options:
    """Validate the arguments of `resize()` and return them as one `Options` value.

    `res` (pixels, one or several) or `preset` (names from presets.PRESETS, one or several) says
    which resolutions; with neither, 490. `model` defaults to the presets' source, or
    openai/clip-vit-large-patch14-336.
    """
    presets = _presets(preset)
    if presets and res is not None:
        raise UsageError(f"give {arg('res')} or {arg('preset')}, not both")
    if presets:
        resolutions = tuple(dict.fromkeys(p.res for p in presets if p.convert))
        notes = tuple(f"{p.name}: {p.note}" for p in presets)
    else:
        resolutions, notes = _resolutions(490 if res is None else res), ()
    out_text = None if out is None else _path_or_id("out", out)
    if out_text is not None and len(resolutions) > 1 and "{res}" not in out_text:
        raise UsageError(
            f"{arg('out')} names one folder; with several resolutions it must hold {{res}}, "
            f"e.g. {arg('out', 'ckpt/clip-{res}')}"
        )
    vision = _flag("vision_only", vision_only)
    projection = _flag("with_projection", with_projection)
    if projection and not vision:
        raise UsageError(f"{arg('with_projection', True)} applies only with {arg('vision_only', True)}")
    default_model = presets[0].source if presets else DEFAULT_MODEL
    return Options(
        model=_path_or_id("model", default_model if model is None else model),
        resolutions=resolutions,
        out=out_text,
        force=_flag("force", force),
        device=_choice("device", device, DEVICES),
        mode=_choice("mode", mode, MODES),
        antialias=_antialias(antialias, mode),
        revision=_optional_text("revision", revision),
        token=_optional_text("token", token, secret=True),
        dtype=_choice("dtype", dtype, DTYPES),
        vision_only=vision,
        with_projection=projection,
        fsync=_flag("fsync", fsync),
        notes=notes,
    )


def _presets(preset: object) -> list[Preset]:
    if preset is None:
        return []
    names = [preset] if isinstance(preset, str) else preset
    if not isinstance(names, Iterable) or not all(isinstance(n, str) for n in names):
        raise UsageError(f"{arg('preset')} must be a preset name or a list of them, not {preset!r}")
    found = [find_preset(n) for n in names]
    if not found:
        raise UsageError(f"{arg('preset')} is empty; give a preset name (see xcr presets)")
    return found


def _pixels(value: object) -> int:
    """An integer number of pixels from an int-like value (int, numpy integer; not bool or str)."""
    if isinstance(value, (str, bytes)):
        raise UsageError(f"{arg('res')} must be a whole number of pixels such as 490, not the text {value!r}")
    if isinstance(value, bool):
        raise UsageError(f"{arg('res')} must be a whole number of pixels, not {value}")
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise UsageError(
            f"{arg('res')} must be a whole number of pixels or a list of them, not {type(value).__name__} {value!r}"
        ) from None
    if n <= 0:
        raise UsageError(f"{arg('res', n)} is not a positive number of pixels")
    return n


def _resolutions(res: object) -> tuple[int, ...]:
    if isinstance(res, Iterable) and not isinstance(res, (str, bytes)) and not hasattr(res, "__index__"):
        values = [_pixels(r) for r in res]
    else:
        values = [_pixels(res)]
    if not values:
        raise UsageError(f"{arg('res')} is empty; give at least one resolution")
    for r in values:
        if values.count(r) > 1:
            raise UsageError(f"{arg('res')} lists {r} twice; give each resolution once")
    return tuple(values)


def _path_or_id(name: str, value: object) -> str:
    what = "a checkpoint folder or a Hub repo id" if name == "model" else "a folder path"
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise UsageError(f"{arg(name)} must be {what}, not {type(value).__name__} {value!r}")
    text = os.fsdecode(os.fspath(value))
    if not text.strip():
        raise UsageError(f"{arg(name)} is empty; give {what}")
    if "\0" in text:
        raise UsageError(f"{arg(name)} contains a NUL character")
    return text


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{arg(name)} must be True or False, not {value!r}")
    return value


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise UsageError(f"{arg(name)} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _antialias(value: object, mode: object) -> bool:
    antialias = _flag("antialias", value)
    if antialias and mode not in ANTIALIAS_MODES:
        raise UsageError(
            f"{arg('antialias', True)} works only with {arg('mode')} {' or '.join(ANTIALIAS_MODES)}, not {mode}"
        )
    return antialias


def _optional_text(name: str, value: object, secret: bool = False) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        shown = type(value).__name__ if secret else repr(value)
        raise UsageError(f"{arg(name)} must be a non-empty string or None, not {shown}")
    return value
