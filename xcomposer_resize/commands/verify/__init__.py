"""`xcr verify`: proof that an output is what its record says, before days of fine-tuning.

Six checks, each reported by name with pass/fail and its figure (weights.py: 1–3, configs.py: 4–5,
load.py: 6):

1. files: every weight file parses with the `safetensors` library (the reference implementation)
   and with xcr's own reader, and the index covers every tensor and states true totals;
2. tensors: the output holds the source's tensors (a vision-only output: the vision tower's), no
   more, no fewer; every one but the position table and ids is byte-identical to the source's (or
   equal to it after the recorded cast); the position ids are arange over the table's rows;
3. table: the position table equals a fresh resample of the source's, with the recorded method;
4. configs: every file but the weights against the source's (the model config and the processor
   files key by key, the keys xcr rewrote apart and checked for what they state; the other files
   byte for byte); a dtype the config states is the weights'; config.json, the processor files and
   the weights agree on the resolution;
5. tokens: (a VLM) every image-token count its files state, and LLaVA-NeXT's anyres tiles, follow
   the new grid;
6. load: (transformers) the output loads with no missing, unexpected or mismatched keys, its image
   processor makes N×N pixels, and its forward pass at N×N equals the source's with
   `interpolate_pos_encoding=True`.

Each check after `files` is one function registered with `@check`, run in `subject.ORDER`, given a
`Subject`: the output and its source, read once.

The byte-level checks stream (32 MiB at a time: memory stays flat); only the forward pass holds
the models. `images=` adds the drift: how far the resize alone moves each image's embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...checkpoint.source import resolve_source
from ...checkpoint.weights import Checkpoint, open_checkpoint
from ...conversion import record
from ...conversion.configs import VisionSizes, vision_sizes
from ...conversion.plan import locate
from ...errors import InputError, UsageError, XcrError, arg
from ...families import CONFIG_FILES, Family, family_named, model_config
from ...size import Grid, Size
from . import configs  # noqa: F401  (its @check functions; weights' and load's are imported above)
from .load import drift, quiet_transformers
from .subject import CHECKS, Check, Drift, Expected, Made, Subject, Verification
from .weights import check_files

__all__ = ["Check", "Drift", "Verification", "verify"]

if TYPE_CHECKING:
    from ...checkpoint.source import Source


def verify(
    out: str | Path,
    against: str | Path | None = None,
    *,
    revision: str | None = None,
    token: str | None = None,
    images: str | Path | None = None,
    family: str | None = None,
    quiet: bool = True,
) -> Verification:
    """Check the output folder `out` against its source: the one its record names (a Hub repo at
    the recorded commit), or `against` (a folder or a repo id; required for an output made from a
    local folder, whose card does not record paths). Raises XcrError for what cannot be checked
    at all (no such folder, no source); failed checks are reported, not raised."""
    for name, value in (("OUT", out), ("against", against), ("images", images)):
        if value is not None and not str(value).strip():
            raise UsageError(f"{name if name == 'OUT' else arg(name)} is empty; give a folder")
    folder = Path(out).expanduser()
    if not folder.exists():
        raise InputError(f"{folder} does not exist; give the folder xcr resize wrote")
    if not any((folder / name).is_file() for name in CONFIG_FILES):
        raise InputError(f"{folder} is not a checkpoint folder (it has no config.json); give an xcr output")
    rec = record.read(folder)
    config, adapter = _output_config(folder, rec, family)
    source = _source(folder, rec, against, revision, token, quiet, adapter.weight_files)
    if source.folder.resolve() == folder.resolve():
        raise UsageError(f"{folder} is checked against itself; give {arg('against')} the checkpoint it was made from")
    src_config = _source_config(source, folder, adapter)
    src_sizes = vision_sizes(src_config, adapter)
    res, grid, config_problem = _meant(folder, config, adapter, rec, src_sizes.patch_size)
    made = _made(rec, adapter, config, src_config)
    files = check_files(folder)
    src_ckpt = open_checkpoint(source.folder, adapter.weight_files)
    subject = Subject(
        folder=folder,
        family=adapter,
        config=config,
        res=res,
        grid=grid,
        prefix=_prefix(adapter, src_ckpt, src_sizes.grid),
        config_problem=config_problem,
        expected=Expected(source, src_config, src_ckpt, src_sizes.patch_size, made),
        src_grid=src_sizes.grid,
        out_ckpt=open_checkpoint(folder, adapter.weight_files) if files.ok else None,
    )
    checks = [files]
    with quiet_transformers():
        for name, needs_files, run in CHECKS:
            if needs_files and subject.out_ckpt is None:
                checks.append(Check(name, None, "not run: the files did not parse"))
            elif (done := run(subject)) is not None:
                checks.append(done)
        drifted = drift(folder, source.folder, config, adapter, Path(images)) if images is not None else None
    return Verification(str(folder), source.display, source.revision, res, checks, drifted)


def _output_config(folder: Path, rec: dict[str, Any] | None, forced: str | None) -> tuple[dict[str, Any], Family]:
    """The output's model config and family: the family its record names (the one the source was
    read as) when its config now names another (an edited model_type, a config of another layout
    added): the configs check then says what changed, instead of the source being called another
    family's."""
    _name, config, family = record.detect(folder, forced)
    name = rec.get("family") if rec and forced is None else None
    try:
        recorded = family_named(name) if isinstance(name, str) else None
    except XcrError:
        recorded = None
    if recorded is None or recorded.name == family.name:
        return config, family
    try:
        _name, config, family = model_config(folder, recorded.name)  # its own layout's config file
        return config, family
    except XcrError:
        return config, recorded.for_config(config)


def _source_config(source: Source, folder: Path, family: Family) -> dict[str, Any]:
    """The source's model config, read as the output's family; a source of another family is not
    the one the output was made from."""
    try:
        return model_config(source.folder, family.name)[1]
    except UsageError:  # the source's config names another family
        other = model_config(source.folder)[2]
        raise InputError(
            f"{source.display} is a checkpoint of the {other.name} family, and {folder} one of the {family.name} "
            f"family: it is not the source {folder} was made from; give {arg('against')} that source"
        ) from None


def _prefix(family: Family, src: Checkpoint, grid: Grid) -> int:
    """The rows before the grid in the source's table (timm: what the table holds beyond its grid)."""
    return locate(src.shapes, family).prefix(grid)


def _meant(folder: Path, config: dict[str, Any], family: Family, rec: dict[str, Any] | None,
           patch: int) -> tuple[Size, Grid, str | None]:  # fmt: skip
    """The resolution and grid the output is meant to have: its record's (else its config's), with
    the source's patch size; and what is wrong with its config, for the configs check to report."""
    try:
        sizes: VisionSizes | None = vision_sizes(config, family)
        problem = None
    except InputError as e:
        sizes, problem = None, e.message
    recorded = Size.from_json(rec.get("res")) if rec else None
    if recorded is not None:
        res = recorded
    elif sizes is not None:
        res = sizes.image_size
    else:
        raise InputError(f"{folder}: {problem}; without an xcr record its resolution is not known either")
    return res, res.grid(patch), problem


def _source(folder: Path, rec: dict[str, Any] | None, against: str | Path | None, revision: str | None,
            token: str | None, quiet: bool, prefer: tuple[str, ...]) -> Source:  # fmt: skip

    if against is not None:
        source = resolve_source(str(against), revision=revision, token=token, quiet=quiet)
    elif rec is None:
        raise UsageError(
            f"{folder} has no xcr record in its model card, so its source is not known; give {arg('against')} SRC"
        )
    elif str(rec.get("source_fingerprint", "")).startswith("files:"):
        raise UsageError(
            f"{folder} was made from a local folder ({rec.get('source')}), which its card does not record by path; "
            f"give {arg('against')} PATH"
        )
    else:
        source = resolve_source(str(rec["source"]), revision=revision or rec.get("revision"), token=token, quiet=quiet)
    source.fetch_weights(prefer)
    return source


def _made(rec: dict[str, Any] | None, family: Family, config: dict[str, Any], src_config: dict[str, Any]) -> Made:
    if rec is None:  # not an xcr output (or an older one): the family's defaults, said in the details
        # the vision tower alone when the config is a vision tower's and the source's is not
        alone, projection = family.vision_only_form(config)
        alone = alone and not family.vision_only_form(src_config)[0]
        return Made(family.mode, family.antialias, "keep", "cpu", False, alone, alone and projection)
    return Made(str(rec.get("mode", "bicubic")), bool(rec.get("antialias")), str(rec.get("dtype", "keep")),
                 str(rec.get("device", "cpu")), True, bool(rec.get("vision_only")),
                 bool(rec.get("with_projection")))  # fmt: skip
