"""The `xcr` commands: each parses its flags, calls one library function and renders the result.

`xcr resize` offers every option of `resize()` as a flag: its flags are made from the fields of
`options.Options` (their help, their kinds), so a new option is a new field there and nothing here.
Errors, signals and --json are `main.py`'s; how results look is `render.py`'s.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect as python_inspect
import re
import sys
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeAlias, get_type_hints

import typer

from .. import presets as table
from ..errors import OutputError, UsageError
from ..families import family_words, non_square_words
from ..options import OFFERED, build_options
from ..presets import DEFAULT_MODEL
from ..size import Size
from ..version import __version__
from . import render
from .deliver import deliver, deliver_json, interruptions, json_asked

app = typer.Typer(
    name="xcr",
    help=f"Resize the vision position embeddings of a checkpoint ({family_words()}) to a new input resolution, "
    "exactly, ready for fine-tuning.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _pixels(value: str) -> Size:
    """--res: pixels (490), or height x width (448x672) for the families whose configs state both."""
    text = value.strip()
    if re.fullmatch(r"[+-][0-9]+", text):
        return Size.square(int(text))  # a sign is judged by build_options, in words of its own
    found = Size.parse(text)
    if found is None:
        raise typer.BadParameter(f"{text!r} is not a size such as 490, or 448x672 (height x width)")
    return found


def _version(value: bool) -> None:
    if value:
        render.write(sys.stdout, f"xcr {__version__}\n")
        raise typer.Exit()


def _offered(name: str) -> Any:
    """The flag of the option `name` of `resize()` (an Options field, `with_projection` → `--with-projection`):
    (its type, its typer.Option)."""
    f = next(f for f in OFFERED if f.name == name)
    meta, flag = f.metadata, "--" + f.name.replace("_", "-")
    kind: Any = {"flag": bool, "tristate": bool | None}.get(meta["kind"], str | None)
    if meta["kind"] == "choice":  # shown as <a|b|c>, checked by click
        kind = Optional[enum.Enum(f.name.title(), {c: c for c in meta["choices"]}, type=str)]  # type: ignore[misc]  # noqa: UP045
    if meta["kind"] == "tristate":
        flag = f"{flag}/--no-{flag[2:]}"
    show = meta["kind"] == "choice" and f.default is not None
    return Annotated[kind, typer.Option(flag, metavar=meta["metavar"] or None, help=meta["help"], show_default=show)]


if TYPE_CHECKING:  # what the type checker sees; typer reads the flags
    Revision: TypeAlias = str | None
    Token: TypeAlias = str | None
    FamilyName: TypeAlias = str | None
else:  # shared with inspect and verify
    Revision, Token, FamilyName = _offered("revision"), _offered("token"), _offered("family")


def _flag(f: dataclasses.Field[Any]) -> python_inspect.Parameter:
    return python_inspect.Parameter(
        f.name, python_inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=_offered(f.name)
    )


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Resize the vision position embeddings of a checkpoint to a new input resolution, exactly."""


def resize(
    res: Annotated[
        list[Size] | None,
        typer.Option(
            "--res",
            "-r",
            metavar="PIXELS",
            parser=_pixels,
            show_default=False,
            help="Target input size in pixels, e.g. 224 or 490: a grid of res // patch (a multiple of the patch "
            "fits exactly); HxW such as 448x672 (height x width) for {non_square}. Repeat it for several outputs "
            "from one read of the source.",
        ),
    ] = None,
    preset: Annotated[
        list[str] | None,
        typer.Option(
            "--preset",
            "-p",
            metavar="NAME",
            show_default=False,
            help="Instead of --res: the resolution of an InternLM-XComposer variant (see xcr presets). Repeatable.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="PATH|REPO",
            show_default=False,
            help=f"Checkpoint folder, or Hub repo id. Default: {DEFAULT_MODEL}.",
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            show_default=False,
            help="Output folder (~ is expanded; a link to a folder is followed); with several resolutions it must "
            "hold {res}, e.g. ckpt/clip-{res}. Default: the source's name with its resolution replaced, in the "
            "current folder.",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout; no progress.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary.")] = False,
    **options: Any,
) -> None:
    """Write a copy of a vision checkpoint whose position embeddings and configs are for --res pixels."""
    from ..conversion.resize import VerificationFailed, convert  # here: `xcr --help` needs none of it

    if not res and not preset:
        raise UsageError("give --res N (repeatable) or --preset NAME (see xcr presets)")
    json_asked(sys.stdout)
    given = {k: v.value if isinstance(v, enum.Enum) else v for k, v in options.items()}
    request = build_options(model, res or None, out, preset=preset or None, **given)
    silent = quiet or json_out
    with interruptions(), render.Progress(silent) as progress:
        try:
            result, failure = convert(request, quiet=silent, on_progress=progress.update, on_note=progress.note), None
        except VerificationFailed as e:
            result, failure = e.result, e
        if json_out:
            deliver_json(result.to_json(), [o.path for o in result.outputs])
        elif not quiet:
            deliver(lambda: "".join(render.verification(v) for v in result.verifications) + render.summary(result))
    if failure is not None:
        raise failure


def _resize_signature() -> None:
    """`resize`'s parameters: its own, then a flag for every option of `resize()` (Options), before
    --json and --quiet; the --res help names the families that take HxW sizes."""
    hints = get_type_hints(resize, include_extras=True)
    own = [
        p.replace(kind=python_inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name])
        for p in list(python_inspect.signature(resize).parameters.values())[:-1]
    ]
    flags = [_flag(f) for f in OFFERED]
    params = [*own[:4], *flags, *own[4:]]
    resize.__signature__ = python_inspect.Signature(params)  # type: ignore[attr-defined]
    resize.__annotations__ = {p.name: p.annotation for p in params}
    res_help = own[0].annotation.__metadata__[0]
    res_help.help = res_help.help.format(non_square=non_square_words())
    app.command()(resize)


_resize_signature()


@app.command()
def presets(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON list on stdout.")] = False,
) -> None:
    """List the InternLM-XComposer variants and the resolution each runs its CLIP tower at."""
    if json_out:
        deliver_json(table.as_json(), [])
    else:
        deliver(render.presets)


@app.command()
def inspect(
    model: Annotated[
        str, typer.Argument(metavar="PATH|REPO", help="Checkpoint folder, or Hub repo id.", show_default=False)
    ],
    revision: Revision = None,
    token: Token = None,
    family: FamilyName = None,
    plot: Annotated[
        str | None,
        typer.Option(
            "--plot",
            metavar="FILE.png",
            show_default=False,
            help="Draw its position embeddings (beside its source's, for an xcr output whose source is cached).",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Show what xcr sees in a checkpoint (grid, table, sizes, files) without converting; for a Hub
    repo, without downloading weights."""
    from ..commands.inspect import inspect as look

    with interruptions():
        found = look(model, revision=revision, token=token, family=family, plot=plot)
    if json_out:
        deliver_json(found.to_json(), [])
    else:
        deliver(lambda: render.inspection(found))


@app.command()
def verify(
    out: Annotated[str, typer.Argument(metavar="OUT", help="An output folder of xcr resize.", show_default=False)],
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            metavar="PATH|REPO",
            show_default=False,
            help="The source to check against. Default: the one OUT's model card records (a Hub repo).",
        ),
    ] = None,
    revision: Revision = None,
    token: Token = None,
    images: Annotated[
        str | None,
        typer.Option(
            "--images",
            metavar="DIR",
            show_default=False,
            help="Also measure the drift: each image's embedding by the source at its size vs the output's.",
        ),
    ] = None,
    family: FamilyName = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Prove an output right: files, tensors, table, configs, and a forward pass against its source."""
    from ..commands.verify import verify as check

    json_asked(sys.stdout)
    with interruptions():
        found = check(out, against, revision=revision, token=token, images=images, family=family)
    if json_out:
        deliver_json(found.to_json(), [])
    else:
        deliver(lambda: render.verification(found))
    if not found.ok:
        raise OutputError(f"{found.output} failed {len(found.failed)} check(s): {', '.join(found.failed)}")
