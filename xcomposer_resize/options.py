"""One conversion request as one value, built and validated once, from the CLI or a Python call.

`build_options` checks what can be checked without the source (types, names, signs);
`check_res` checks a resolution against a model's patch size and table width once they are known.
The interpolation is left None unless given: the model's family decides it (`Options.method`).
Messages spell arguments the caller's way (`errors.arg`).
"""

from __future__ import annotations

import dataclasses
import math
import operator
import os
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .checkpoint.dtypes import DTYPE_WORDS
from .errors import UsageError, arg
from .families import NAMES, family_named, flag_names, method_words
from .interpolate import ANTIALIAS_MODES, MODES
from .presets import DEFAULT_MODEL, Preset
from .presets import preset as find_preset
from .size import Size
from .text import human_bytes

if TYPE_CHECKING:
    from .families import Family

DEVICES = ("auto", "cpu", "cuda")
MAX_TABLE_BYTES = 2 << 30  # refuse position tables larger than this (float32)
DTYPES = ("keep", *(w for w in DTYPE_WORDS.values() if w != "float64"))  # --dtype: keep, float32, float16, bfloat16


def offered(help: str, kind: str, *, choices: tuple[str, ...] = (), metavar: str = "", short: str = "") -> Any:
    """The metadata of an Options field that the caller gives (a keyword of `resize()`, a flag of
    `xcr resize`, built from it): its help, and its `kind`, which says how it is validated: `flag`
    (True/False), `choice` (one of `choices`), `tristate` (True/False/None), `text` (a string or None),
    `secret` (likewise, never shown), `family` (a family name), `path` (a file path or None)."""
    return {"help": help, "kind": kind, "choices": choices, "metavar": metavar, "short": short}


@dataclass(frozen=True)
class Options:
    """What to convert, to which resolutions, where, and how. The fields after `out` are the
    options a caller gives by name, as they are: a new option is a new field (its default, its
    help, its kind), validated by `build_options` and offered by the CLI as a flag of its own."""

    model: str
    resolutions: tuple[Size, ...]
    out: str | None  # as given (`~` not yet expanded; may hold `{res}`); None: a name derived from the source's
    force: bool = field(
        default=False,
        metadata=offered(
            "Replace an existing checkpoint or earlier output (only once the new one is complete; never files it would "
            "not write).",
            "flag",
        ),
    )
    dtype: str = field(
        default="keep",
        metadata=offered(
            "Cast every floating tensor of the output; the table is still resampled in float32 and cast once.",
            "choice",
            choices=DTYPES,
        ),
    )
    vision_only: bool = field(
        default=False,
        metadata=offered(
            "Write only the vision tower, with a vision config that CLIPVisionModel loads (XComposer, LLaVA).", "flag"
        ),
    )
    with_projection: bool = field(
        default=False,
        metadata=offered("With --vision-only: keep visual_projection, for CLIPVisionModelWithProjection.", "flag"),
    )
    device: str = field(
        default="cpu",
        metadata=offered(
            "Where to interpolate. cpu is bit-exact with transformers; CUDA's bicubic differs by up to 1 ulp. auto picks "
            "CUDA when present.",
            "choice",
            choices=DEVICES,
        ),
    )
    mode: str | None = field(
        default=None,
        metadata=offered(
            f"Interpolation. Default: what the family's own runtime applies ({method_words()[0]}; for CLIP, XComposer's "
            "resize_pos and transformers' interpolate_pos_encoding).",
            "choice",
            choices=MODES,
        ),
    )
    antialias: bool | None = field(
        default=None,
        metadata=offered(
            f"Antialiased bicubic/bilinear, or not. Default: the family's ({method_words()[1]}).", "tristate"
        ),
    )
    family: str | None = field(
        default=None,
        metadata=offered(
            f"The model family, when the config does not say it: {flag_names()}.", "family", metavar="NAME"
        ),
    )
    fsync: bool = field(
        default=False,
        metadata=offered("Flush every file and the folder to the disk before and after the output lands.", "flag"),
    )
    revision: str | None = field(
        default=None, metadata=offered("Hub branch, tag or commit (default main).", "text", metavar="REV")
    )
    token: str | None = field(
        default=None,
        metadata=offered(
            "Hub token (default: HF_TOKEN or the saved login). Never printed or saved.", "secret", metavar="TOKEN"
        ),
    )
    verify: bool = field(
        default=False,
        metadata=offered("Run xcr verify on each output before reporting success (exit 1 naming a failure).", "flag"),
    )
    plot: str | None = field(
        default=None,
        metadata=offered(
            "Draw the source's and the output's position embeddings (with several --res, FILE holds {res}).",
            "path",
            metavar="FILE.png",
        ),
    )
    notes: tuple[str, ...] = ()  # what the presets say
    as_is: tuple[Size, ...] = ()  # resolutions a preset runs the source at as it is: nothing to write when it is

    def method(self, family: Family) -> Options:
        """These options with the interpolation settled: what was given, else `family`'s default."""
        mode, antialias = settle_method(family, self.mode, self.antialias)
        return dataclasses.replace(self, mode=mode, antialias=antialias)

    @property
    def interpolation(self) -> tuple[str, bool]:
        """(mode, antialias), once `method` has settled them."""
        if self.mode is None or self.antialias is None:
            raise AssertionError("the interpolation is not settled: call Options.method(family) first")
        return self.mode, self.antialias

    def out_for(self, res: Size) -> str | None:
        """The output folder for `res`: `out` with `{res}` filled in (`490`, `448x672`)."""
        return None if self.out is None else self.out.replace("{res}", str(res))

    def plot_for(self, res: Size) -> str | None:
        """The picture for `res`: `plot` with `{res}` filled in."""
        return None if self.plot is None else self.plot.replace("{res}", str(res))


OFFERED = tuple(f for f in dataclasses.fields(Options) if "kind" in f.metadata)  # the options given by name


def settle_method(family: Family, mode: str | None, antialias: bool | None) -> tuple[str, bool]:
    """(mode, antialias): what was given, else `family`'s own run-time interpolation (its antialias
    only where the mode has one)."""
    mode = mode if mode is not None else family.mode
    antialias = antialias if antialias is not None else family.antialias and mode in ANTIALIAS_MODES
    if antialias and mode not in ANTIALIAS_MODES:
        raise UsageError(
            f"{arg('antialias', True)} works only with {arg('mode')} {' or '.join(ANTIALIAS_MODES)}, not {mode}"
        )
    return mode, antialias


@dataclass(frozen=True)
class ModelOptions:
    """What `resize_model` was asked: one size, where to interpolate, and how (None: the family's)."""

    res: Size
    device: str = "cpu"
    mode: str | None = None
    antialias: bool | None = None

    def method(self, family: Family) -> tuple[str, bool]:
        """(mode, antialias) for a model of `family`: what was given, else the family's default."""
        return settle_method(family, self.mode, self.antialias)


def build_model_options(res: object, *, mode: object = None, antialias: object = None,
                        device: object = "cpu") -> ModelOptions:  # fmt: skip
    """Validate the arguments of `resize_model()` (everything but the model) and return them as one
    value. `res` is one size: pixels (490), `"448x672"` or `Size(448, 672)` (height x width); a
    model runs at one size, so a list is refused, saying what to give instead."""
    return ModelOptions(
        res=_one_size(res),
        device=_device(device),
        mode=None if mode is None else _choice("mode", mode, MODES),
        antialias=_antialias(antialias, mode),
    )


def check_cuda() -> None:
    """Refuse `device='cuda'` where torch sees no usable CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        raise UsageError(
            f"{arg('device', 'cuda')}: no CUDA GPU is usable here (torch {torch.__version__}); "
            f"use {arg('device', 'cpu')} or auto"
        )


def _device(value: object) -> str:
    device = _choice("device", value, DEVICES)
    if device == "cuda":
        check_cuda()
    return device


def _one_size(res: object) -> Size:
    if isinstance(res, tuple) and len(res) == 2 and all(hasattr(v, "__index__") for v in res):
        raise UsageError(
            f"{arg('res')}={res!r} is ambiguous: give '{res[0]}x{res[1]}' (or Size{res!r}) for height {res[0]} "
            f"and width {res[1]}, or one number for a square"
        )
    if isinstance(res, (Iterable, Mapping)) and not isinstance(res, (str, bytes, Size)):
        raise UsageError(
            f"{arg('res')} must be one size (a model runs at one), such as 490 or '448x672', not "
            f"{type(res).__name__} {res!r}; to write several sizes from one checkpoint, use resize()"
        )
    return size(res, many=False)


def build_options(model: object = None, res: object = None, out: object = None, *, preset: object = None,
                  **given: object) -> Options:  # fmt: skip
    """Validate the arguments of `resize()` and return them as one `Options` value.

    `res` (one or several sizes: pixels such as 490, or `Size`/text such as "448x672" for height x
    width) or `preset` (names from presets.PRESETS, one or several) says which resolutions; with
    neither, 490. `model` defaults to the presets' source, or openai/clip-vit-large-patch14-336.
    `given`: the options by name (the fields of Options in OFFERED); None or left out: the default
    (`mode`/`antialias` None: the family's own interpolation).
    """
    unknown = sorted(set(given) - {f.name for f in OFFERED})
    if unknown:
        names = ", ".join(f.name for f in OFFERED)
        raise UsageError(f"{arg(unknown[0])} is not an option of resize(); the options are {names}")
    presets = _presets(preset)
    if presets and res is not None:
        raise UsageError(f"give {arg('res')} or {arg('preset')}, not both")
    if presets:
        resolutions = tuple(Size.square(p.res) for p in presets)
        as_is = tuple(Size.square(p.res) for p in presets if not p.convert)
        notes = tuple(f"{p.name}: {p.note}" for p in presets)
    else:
        resolutions, as_is, notes = _resolutions(490 if res is None else res), (), ()
    out_text = None if out is None else _path_or_id("out", out)
    if out_text is not None and len(resolutions) > 1 and "{res}" not in out_text:
        raise UsageError(
            f"{arg('out')} names one folder; with several resolutions it must hold {{res}}, "
            f"e.g. {arg('out', 'ckpt/clip-{res}')}"
        )
    values = {f.name: _valid(f, given.get(f.name, f.default), given) for f in OFFERED}
    if values["with_projection"] and not values["vision_only"]:
        raise UsageError(f"{arg('with_projection', True)} applies only with {arg('vision_only', True)}")
    plot = values["plot"]
    if isinstance(plot, str) and len(resolutions) > 1 and "{res}" not in plot:
        raise UsageError(f"{arg('plot')} names one file; with several resolutions it must hold {{res}}")
    default_model = presets[0].source if presets else DEFAULT_MODEL
    model = _path_or_id("model", default_model if model is None else model)
    return Options(model, resolutions, out_text, notes=notes, as_is=as_is, **values)  # type: ignore[arg-type]


def _valid(f: dataclasses.Field[Any], value: object, given: dict[str, object]) -> object:
    """`value` for the option `f`, validated by its kind (see `offered`)."""
    kind, name = f.metadata["kind"], f.name
    if kind == "flag":
        return _flag(name, value)
    if kind == "choice":
        return None if value is None and f.default is None else _choice(name, value, f.metadata["choices"])
    if kind == "tristate":
        return _antialias(value, given.get("mode"))
    if kind == "family":
        return _family(value)
    if kind == "path":
        return None if value is None else _path_or_id(name, value)
    return _optional_text(name, value, secret=kind == "secret")


def _presets(preset: object) -> list[Preset]:
    if preset is None:
        return []
    if not isinstance(preset, str) and not isinstance(preset, Iterable):
        raise UsageError(f"{arg('preset')} must be a preset name or a list of them, not {preset!r}")
    names = [preset] if isinstance(preset, str) else list(preset)
    if not all(isinstance(n, str) for n in names):
        raise UsageError(f"{arg('preset')} must be a preset name or a list of them, not {preset!r}")
    found = [find_preset(n) for n in names]
    if not found:
        raise UsageError(f"{arg('preset')} is empty; give a preset name (see xcr presets)")
    for p in found:
        if names.count(p.name) > 1:
            raise UsageError(f"{arg('preset')} lists {p.name} twice; give each preset once")
    twins = [p for p in found if [q.res for q in found].count(p.res) > 1]
    if twins:
        raise UsageError(
            f"{' and '.join(p.name for p in twins)} both run at {twins[0].res} px: one output serves both; give one"
        )
    return found


def largest_grid(width: int, prefix: int) -> int:
    """The side of the largest square grid whose float32 table fits in MAX_TABLE_BYTES."""
    cells = MAX_TABLE_BYTES // (4 * width) - prefix
    return math.isqrt(cells) if cells > 0 else 0


def check_res(res: Size, patch: int, width: int | None, prefix: int) -> str | None:
    """Refuse a size the table cannot have (too large, or smaller than one patch). A size that is
    not a multiple of the patch is accepted, as transformers and timm accept it (the grid is
    res // patch): the returned note says how many pixels the patches leave out."""
    check_cost(res, patch, width, prefix)
    if min(res.sides) < patch:
        raise UsageError(f"{res_arg(res)} is smaller than one {patch}-px patch; use at least {patch}")
    if res.height % patch == 0 and res.width % patch == 0:
        return None
    gh, gw = res.grid(patch)
    largest = largest_grid(width, prefix) * patch if width else None
    if res.is_square:
        lower, upper = res.height - res.height % patch, res.height - res.height % patch + patch
        hints = [str(r) for r in (lower, upper) if r > 0 and (largest is None or r <= largest)]
        where = f"the last {res.height % patch} px on the right and at the bottom"
    else:
        below = Size(gh * patch, gw * patch)
        above = Size(*(n if n % patch == 0 else n - n % patch + patch for n in res.sides))
        hints = [str(below), str(above)]
        left = [f"{n % patch} px {side}" for n, side in ((res.width, "on the right"), (res.height, "at the bottom"))
                if n % patch]  # fmt: skip
        where = f"the last {' and '.join(left)}"
    return (
        f"{res_arg(res)} is not a multiple of the patch size {patch}: the {gh}×{gw} grid covers "
        f"{Size(gh * patch, gw * patch).px} and the patch embedding does not see {where} (as at run time); "
        f"{' or '.join(hints)} would fit exactly"
    )


def check_cost(res: Size, patch: int, width: int | None, prefix: int) -> None:
    """Refuse, before allocating anything, a position table too large to be meant."""
    if width is None:
        return
    gh, gw = res.grid(patch)
    cost = (prefix + gh * gw) * width * 4
    if cost > MAX_TABLE_BYTES:
        raise UsageError(
            f"{res_arg(res)} means a {gh}×{gw} grid and a position table of {_size(cost)} "
            f"(limit {_size(MAX_TABLE_BYTES)}); use a smaller {arg('res')}, "
            f"at most {largest_grid(width, prefix) * patch}"
            + (
                ""
                if res.is_square
                else f" for a square, or H×W with at most {MAX_TABLE_BYTES // (4 * width) - prefix:,} patches"
            )
        )


def res_arg(res: Size) -> str:
    """`--res 490` / `res=490`; `--res 448x672` / `res='448x672'`."""
    return arg("res", res.height if res.is_square else str(res))


def _size(n: int) -> str:
    """Bytes in binary units, exact when rounding would hide the difference from the limit."""
    text = human_bytes(n)
    return text if n == MAX_TABLE_BYTES or text != human_bytes(MAX_TABLE_BYTES) else f"{n:,} bytes"


def pixels(value: object, many: bool = True) -> int:
    """An integer number of pixels from an int-like value (int, numpy integer; not bool or str).
    `many`: the caller also takes a list of sizes (the message says so)."""
    if isinstance(value, (str, bytes)):
        raise UsageError(f"{arg('res')} must be a whole number of pixels such as 490, not the text {value!r}")
    if isinstance(value, bool):
        raise UsageError(f"{arg('res')} must be a whole number of pixels, not {value}")
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise UsageError(
            f"{arg('res')} must be a whole number of pixels{' or a list of them' if many else ''}, "
            f"not {type(value).__name__} {value!r}"
        ) from None
    if n <= 0:
        raise UsageError(f"{arg('res', n)} is not a positive number of pixels; give a size such as 490")
    return n


def size(value: object, many: bool = True) -> Size:
    """A size from pixels (490), a `Size`, or text: "490", "448x672" (height x width). `many`: the
    caller also takes a list of sizes (a message about a wrong type says so)."""
    if isinstance(value, Size):
        if not all(type(v) is int for v in value.sides):
            raise UsageError(f"{arg('res')} {value!r} must hold whole numbers of pixels, such as Size(448, 672)")
        found: Size | None = value
    elif isinstance(value, str):
        found = Size.parse(value)
        if found is None:
            raise UsageError(f"{arg('res')} {value!r} is not a size such as 490 or 448x672 (height x width)")
    else:
        return Size.square(pixels(value, many))
    assert found is not None
    if min(found.sides) <= 0:
        raise UsageError(f"{res_arg(found)} is not a positive number of pixels; give a size such as 490")
    return found


def _resolutions(res: object) -> tuple[Size, ...]:
    if isinstance(res, tuple) and len(res) == 2 and all(hasattr(v, "__index__") for v in res):
        raise UsageError(
            f"{arg('res')}={res!r} is ambiguous: give a list {list(res)!r} for two sizes, or "
            f"'{res[0]}x{res[1]}' (or Size{res!r}) for one of height {res[0]} and width {res[1]}"
        )
    if isinstance(res, (Mapping, AbstractSet)):
        raise UsageError(f"{arg('res')} must be a size or a list of them, not {type(res).__name__} {res!r}")
    many = isinstance(res, Iterable) and not isinstance(res, (str, bytes, Size)) and not hasattr(res, "__index__")
    values = [size(r) for r in res] if isinstance(res, Iterable) and many else [size(res)]
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


def _family(value: object) -> str | None:
    if value is None:
        return None

    if not isinstance(value, str):
        raise UsageError(f"{arg('family')} must be a family name, not {value!r}")
    found = family_named(value)
    return next(key for key, family in NAMES.items() if family is found)  # as the user spells it on the CLI


def _antialias(value: object, mode: object) -> bool | None:
    if value is None:
        return None
    antialias = _flag("antialias", value)
    if antialias and mode is not None and mode not in ANTIALIAS_MODES:
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
