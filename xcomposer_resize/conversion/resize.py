"""The one orchestration: source → family and sizes → targets (up to date?) → plan → for each target:
write a temporary folder and land it (write.py) → verify and draw what landed.

`resize()` is the library's entry point; the CLI is a thin face over it.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint.source import Source, resolve_source
from ..commands import plot
from ..commands import verify as verification
from ..commands.verify import Verification
from ..errors import OutputError, UsageError, XcrError, complete, stopped
from ..families import PROCESSOR_FILES, Family, VlmFamily
from ..options import Options, build_options, check_cost, check_cuda, check_res, res_arg
from ..size import Grid, Size, grid_text
from . import record, write
from .configs import VisionSizes, vision_sizes
from .land import check_existing
from .plan import Plan, check_processors, make_plan, planned_bytes
from .write import Target

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)
NoteFn = Callable[[str], None]


@dataclass(frozen=True)
class OutputReport:
    """One output in place: where, its size and grid; whether it was there already, up to date (then
    nothing was rewritten); else what the rewrite changed in each file (file → dotted key, or "line N"
    of a code file → [before, after]: {"config.json": {"vision_config.image_size": [336, 490]}})."""

    path: str
    res: Size
    grid: Grid
    up_to_date: bool = False
    settings: dict[str, dict[str, list[Any]]] | None = None


LandedFn = Callable[[OutputReport], None]


@dataclass
class Result:
    """What `resize` did; `to_json()` is the CLI's --json object."""

    source: str
    revision: str | None
    outputs: list[OutputReport] = field(default_factory=list)
    tensors_rewritten: list[str] = field(default_factory=list)
    bytes_written: int = 0  # the size of every file written
    bytes_shared: int = 0  # of those, the bytes in disk blocks shared with the source (copy-on-write clones)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    source_folder: str = ""  # the source's files on this machine (a Hub snapshot in the cache)
    verifications: list[Verification] = field(default_factory=list)  # with verify=True, one per output
    interrupted: KeyboardInterrupt | None = field(default=None, repr=False)  # Ctrl-C/SIGTERM once all landed

    @property
    def ok(self) -> bool:
        """Every output is in place and passed the verification asked for."""
        return all(v.ok for v in self.verifications)

    def to_json(self) -> dict[str, Any]:
        data = {
            "ok": self.ok,
            "source": self.source,
            "revision": self.revision,
            "outputs": [
                {
                    "path": o.path,
                    "res": o.res.json(),
                    "grid": list(o.grid),
                    "up_to_date": o.up_to_date,
                    "settings": o.settings,
                }
                for o in self.outputs
            ],
            "tensors_rewritten": self.tensors_rewritten,
            "bytes_written": self.bytes_written,
            "bytes_shared": self.bytes_shared,
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
        }
        if self.verifications:
            data["verify"] = [v.to_json() for v in self.verifications]
        return data


class VerificationFailed(OutputError):
    """An output is in place but failed `verify` (resize(verify=True)); `result` says all."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(message)
        self.result = result


def resize(
    model: str | os.PathLike[str] | None = None,
    res: int | str | Size | Sequence[int | str | Size] | None = None,
    out: str | os.PathLike[str] | None = None,
    *,
    preset: str | Sequence[str] | None = None,
    quiet: bool = True,
    on_progress: ProgressFn | None = None,
    on_note: NoteFn | None = None,
    **options: Any,
) -> Result:
    """Convert `model` (a folder, or a Hub repo id) to each resolution in `res`: pixels (490), or
    height x width ("448x672" or `Size(448, 672)`) for the families whose configs state two sides.

    Writes one folder per resolution (`out`, which holds `{res}` when there are several, or a name
    derived from the source's), each a complete checkpoint whose config and processor files state
    the new resolution, each landed on its own. An output already made by an earlier run with the
    same source and options is left as it is ("up to date"). Raises XcrError subclasses; nothing
    is left behind for an output that fails.

    `res` or `preset` (names from `xcr presets`) chooses the resolutions (default 490); `model`
    defaults to the presets' source, openai/clip-vit-large-patch14-336. `options` are those of
    `xcr resize`, by name (`options.Options`): `force`, `dtype` (keep, float32, float16, bfloat16),
    `vision_only`, `with_projection`, `device`, `mode` and `antialias` (default: what the family's
    own runtime applies), `family`, `fsync`, `revision`, `token`, `verify` (run `verify()` on each
    output; a failure raises VerificationFailed) and `plot` (a PNG of the tables, `{res}` in it
    with several sizes).

    `device` defaults to "cpu": CPU bicubic is the one transformers and XComposer compute, bit for
    bit; CUDA's kernel differs by up to one ulp when upsampling (measured on an H100), and the
    table is small enough that the GPU saves nothing. "auto" picks CUDA when present.
    """
    return convert(build_options(model, res, out, preset=preset, **options), quiet=quiet, on_progress=on_progress,
                   on_note=on_note)  # fmt: skip


def convert(
    options: Options,
    *,
    quiet: bool = True,
    on_progress: ProgressFn | None = None,
    on_note: NoteFn | None = None,
    on_landed: LandedFn | None = None,
) -> Result:
    """`resize()` for an already validated `Options` value. `on_landed` is called with each output
    the instant it is in place (before anything else can interrupt the run)."""
    started = time.perf_counter()
    if options.plot is not None:
        plot.require_matplotlib()
        for r in options.resolutions:
            plot.check_path(Path(str(options.plot_for(r))).expanduser(), options.plot_for(r))
    source = resolve_source(options.model, revision=options.revision, token=options.token, quiet=quiet)
    result = Result(source.display, source.revision, source_folder=str(source.folder))

    def note(message: str) -> None:
        result.notes.append(message)
        if on_note:
            on_note(message)

    def landed(report: OutputReport) -> None:
        result.outputs.append(report)
        if on_landed:
            on_landed(report)

    try:
        _convert(options, source, note, landed, result, on_progress)
    except BaseException as e:
        if result.outputs:
            _mention_completed(e, [r.path for r in result.outputs])
        raise
    result.seconds = time.perf_counter() - started
    _afterwards(options, result, note)
    return result


def _convert(options: Options, source: Source, note: NoteFn, landed: LandedFn, result: Result,
             on_progress: ProgressFn | None) -> None:  # fmt: skip
    """Everything up to the last output landing, told through `note` and `landed`."""
    for message in options.notes:
        note(message)
    config_name, config, family = record.detect(source.folder, options.family)
    options = options.method(family)
    plan, sizes = _sizes(options, source, family, config, config_name, note)
    resolutions = _resolutions(options, source, family, config, sizes, note)
    if not resolutions:
        return
    width = write.config_width(config, family)
    targets = write.targets(options, resolutions, source, sizes, width, family, record.fingerprint(source))
    for r in resolutions:
        partial = check_res(r, sizes.patch_size, width, family.num_prefix_tokens)
        if partial:
            note(partial)
    if options.device == "cuda":
        check_cuda()
    for t in targets:  # complete already: what an interruption now must not report as lost
        if t.up_to_date:
            landed(OutputReport(str(t.shown), t.res, t.grid(sizes.patch_size), True))
    todo = [t for t in targets if not t.up_to_date]
    if todo:
        plan = plan or make_plan(source, family, config, sizes, options, config_name)
        _check_plan(plan, todo, note)
        _write_all(plan, todo, landed, result, note, on_progress)
        order = {str(t.shown): i for i, t in enumerate(targets)}
        result.outputs.sort(key=lambda r: order[r.path])


def _sizes(options: Options, source: Source, family: Family, config: dict[str, Any], config_name: str,
           note: NoteFn) -> tuple[Plan | None, VisionSizes]:  # fmt: skip
    """The vision sizes, as the config states them; where it leaves them out, the weights must
    agree with the defaults first, or every --res hint would be wrong (then the plan is made now)."""
    sizes = vision_sizes(config, family)
    if sizes.stated:
        return None, sizes
    plan = make_plan(source, family, config, sizes, options, config_name)
    if "patch_size" in sizes.missing and "patch_size" not in plan.sizes.missing:
        note(f"{config_name} does not state the patch size; the weights' patch embedding has "
             f"{plan.sizes.patch_size}-px patches")  # fmt: skip
    sizes = plan.sizes
    if not sizes.stated:
        note(f"{config_name} does not state the vision {' and '.join(sizes.missing)}; {family.library} assumes "
             f"{sizes.image_size.px} with {sizes.patch_size}-px patches, which the weights confirm")  # fmt: skip
    return plan, sizes


def _resolutions(options: Options, source: Source, family: Family, config: dict[str, Any], sizes: VisionSizes,
                 note: NoteFn) -> list[Size]:  # fmt: skip
    """The resolutions to write: each one the family can take (else an error saying why), but
    those a preset runs the source at as it is."""
    square_reason = family.square_reason(config)
    for r in options.resolutions:
        if not r.is_square and square_reason:
            raise UsageError(
                f"{res_arg(r)} is not square, and a {family.name} checkpoint cannot be: {square_reason}; "
                f"give one size such as {r.height}"
            )
        refusal = family.refusal(config, r)
        if refusal:
            raise UsageError(refusal)
    resolutions = [r for r in options.resolutions if not write.as_is(options, sizes, r)]
    for r in options.resolutions:
        if r not in resolutions:
            note(f"no conversion is needed for {r.px}: {source.display} is already at {sizes.image_size.px}")
    return resolutions


def _check_plan(plan: Plan, todo: list[Target], note: NoteFn) -> None:
    """What only the weights can tell, before any output is written: table sizes, processor forms,
    what --force would replace; and what the user should know about the plan."""
    sizes = plan.sizes
    for t in todo:
        check_cost(t.res, sizes.patch_size, plan.pos.shape[-1], plan.prefix)
    for t in todo:
        check_processors(plan, t.res)
        if plan.options.force:  # now that the files are known: --force replaces a checkpoint of those files only
            check_existing(t.final, t.shown, True, plan.writes)
    for message in plan.notes:
        note(message)
    for message in dict.fromkeys(plan.family.size_note(plan.config, t.res) for t in todo):
        if message:
            note(message)
    if plan.family.processor_files and not plan.family.pixels_in_code and not plan.processors:
        note(_no_processor(plan, todo))
    if any(t.grid(sizes.patch_size) == sizes.grid for t in todo):
        note(f"the position grid is already {grid_text(sizes.grid)} at {sizes.image_size.px}: writing it unchanged")


def _no_processor(plan: Plan, todo: list[Target]) -> str:
    """The note for a source without processor files: what the processor the user brings must say."""
    sizes = []
    for t in todo:
        tokens = ""
        if isinstance(plan.family, VlmFamily):
            tokens = f" and {plan.family.tokens(plan.config, t.grid(plan.sizes.patch_size))} image tokens per image"
        sizes.append(f"{t.res.px}{tokens}")
    each = "each output's: " if len(sizes) > 1 else ""
    return (
        f"{plan.source.display} has no processor files ({' or '.join(PROCESSOR_FILES)}), so the output "
        f"has none either: a processor from elsewhere makes pixels of its own size; set it to {each}{', '.join(sizes)}"
    )


def _write_all(plan: Plan, todo: list[Target], landed: LandedFn, result: Result, note: NoteFn,
               on_progress: ProgressFn | None) -> None:  # fmt: skip
    """Write and land every target, one torch worker for all; Ctrl-C while one lands stops the run
    before the next, and after the last is kept for `_afterwards`."""
    total = sum(planned_bytes(plan, t.grid(plan.sizes.patch_size)) for t in todo)
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if on_progress:
            on_progress(done, total)

    def one_landed(target: Target, nbytes: write.Written, names: tuple[str, ...], up_to_date: bool) -> None:
        result.bytes_written += nbytes.total
        result.bytes_shared += nbytes.shared
        result.tensors_rewritten = sorted({*result.tensors_rewritten, *names})
        grid = target.grid(plan.sizes.patch_size)
        landed(OutputReport(str(target.shown), target.res, grid, up_to_date, None if up_to_date else nbytes.settings))

    worker = write.start_worker(plan, todo)
    try:
        for i, target in enumerate(todo):
            interrupts = write.write_target(plan, target, progress, worker, functools.partial(one_landed, target),
                                            note)  # fmt: skip
            if interrupts and i + 1 < len(todo):
                raise interrupts[0]  # Ctrl-C while this output landed: stop before the next one
            last = interrupts[0] if interrupts else None
            result.interrupted = last if isinstance(last, KeyboardInterrupt) else None
        if worker:
            worker.close()
    except BaseException as e:
        if worker:
            worker.kill()
        if len(result.outputs) < len(todo) or not isinstance(e, KeyboardInterrupt):
            raise
        # every output landed and then came Ctrl-C or SIGTERM: the run is done, nothing may undo that,
        # but no more work may start (verify, plot)
        result.interrupted = e


def _afterwards(options: Options, result: Result, note: NoteFn) -> None:
    """Verify and draw the outputs that landed, as asked. They are in place whatever happens here:
    a failure says so, and Ctrl-C (now, or while the last one landed) stops this work only."""
    outputs = [o.path for o in result.outputs]
    later = " and ".join(w for w, on in (("it was not verified", options.verify), ("no plot was drawn", options.plot))
                         if on)  # fmt: skip
    if result.interrupted is not None and later:
        raise stopped(result.interrupted, outputs, later)
    try:
        for o in result.outputs if options.verify else []:
            try:
                result.verifications.append(verification.verify(o.path, result.source, revision=result.revision,
                                                   family=options.family))  # fmt: skip
            except XcrError as e:
                raise OutputError(f"{o.path} is complete, but it could not be verified: {e.message}") from e
        for o in result.outputs if options.plot is not None else []:
            try:
                plot.draw(Path(str(options.plot_for(o.res))).expanduser(), Path(o.path), Path(result.source_folder))
            except XcrError as e:
                raise OutputError(f"{complete(outputs)}, but no plot was drawn: {e.message}") from e
    except KeyboardInterrupt as e:
        raise stopped(e, outputs, f"{later} (interrupted)") from None
    if options.plot is not None and not result.outputs:
        note("no plot was drawn: nothing was written")
    failed = [v for v in result.verifications if not v.ok]
    if failed:
        again = f"xcr verify {failed[0].output}" + (f" --against {result.source}" if result.revision is None else "")
        raise VerificationFailed(
            "; ".join(f"{v.output} failed verification ({', '.join(v.failed)})" for v in failed)
            + f"; left in place: see `{again}`",
            result,
        )


def _mention_completed(e: BaseException, paths: list[str]) -> None:
    """Say, on the error that stops a run of several outputs, which outputs are complete."""
    if getattr(e, "completed", None):
        return  # said already
    done = ", ".join(paths)
    e.completed = tuple(paths)  # type: ignore[attr-defined]
    if isinstance(e, XcrError):
        e.message = f"{e.message} (already complete: {done})"
