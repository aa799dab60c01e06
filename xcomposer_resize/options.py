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
from typing import Any

from .errors import UsageError, arg
from .interpolate import ANTIALIAS_MODES, MODES

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Options:
    """What to convert, to which resolutions, where, and how."""

    model: str
    resolutions: tuple[int, ...]
    out: str | None  # as given (`~` not yet expanded); None: a name derived from the source's
    force: bool = False
    device: str = "cpu"
    mode: str = "bicubic"
    antialias: bool = False
    revision: str | None = None
    token: str | None = None


def build_options(
    model: object,
    res: object,
    out: object = None,
    *,
    force: object = False,
    device: object = "cpu",
    mode: object = "bicubic",
    antialias: object = False,
    revision: object = None,
    token: object = None,
) -> Options:
    """Validate the arguments of `resize()` and return them as one `Options` value."""
    resolutions = _resolutions(res)
    if out is not None and len(resolutions) > 1:
        raise UsageError(f"{arg('out')} names one folder; with several resolutions leave it out")
    return Options(
        model=_path_or_id("model", model),
        resolutions=resolutions,
        out=None if out is None else _path_or_id("out", out),
        force=_flag("force", force),
        device=_choice("device", device, DEVICES),
        mode=_choice("mode", mode, MODES),
        antialias=_antialias(antialias, mode),
        revision=_optional_text("revision", revision),
        token=_optional_text("token", token, secret=True),
    )


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


def describe(options: Options) -> dict[str, Any]:
    """The options that shape the output, for the model card and reports (never the token)."""
    return {"mode": options.mode, "antialias": options.antialias, "device": options.device}
