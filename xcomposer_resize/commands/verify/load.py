"""The checks that run transformers: 6. load (the output loads, its processor makes the size, its
forward pass equals the source's run-time interpolation) and the drift over real images."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...checkpoint.dtypes import DTYPE_WORDS
from ...checkpoint.weights import load_tensor, open_checkpoint, read_json
from ...errors import InputError, UsageError, XcrError, arg
from ...families import Family, VlmFamily
from ...families.transformers import PROCESSOR_FILES
from ...size import Size, grid_text
from .subject import IMAGE_SUFFIXES, TOLERANCE, VERIFY_EXTRA, Check, Drift, Subject, check, first_line, stored_dtypes

if TYPE_CHECKING:
    pass


# ---------------------------------------------------------------- 6. load and forward


@check("load")
def _check_load(subject: Subject) -> Check:
    """Load the output with transformers, make N×N pixels with its processor, and compare its
    forward pass at N×N with the source's with interpolate_pos_encoding=True. Both load in float32
    (whatever dtype their configs state, which the configs check holds to the weights); `stored`,
    the dtypes the output's files store, says whether the comparison must be exact."""
    folder, config, family, res, made = subject.folder, subject.config, subject.family, subject.res, subject.made
    source, source_grid, stored = subject.expected.source.folder, subject.src_grid, stored_dtypes(folder)
    if family.oracle(config) is None:
        return Check("load", None, f"skipped: no transformers class loads {family.name} checkpoints ({family.name} "
                     "loads it, which xcr does not use); the table and configs checks cover what xcr wrote")  # fmt: skip
    try:
        import PIL  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return Check("load", None, f"skipped: it needs transformers and pillow ({VERIFY_EXTRA})")

    vlm = family if isinstance(family, VlmFamily) else None  # a VLM's tower is loaded alone, never its LLM
    tower = vlm if vlm and not vlm.vision_only_form(config)[0] else None
    cls = _model_class(config, family)
    what = f"{tower.vision_architectures[0]} (its vision tower alone)" if tower else cls.__name__
    model, info, failure = _load_tower(folder, tower) if tower else _load(cls, folder)
    if model is None:
        return Check("load", False, f"{what if tower else cls.__name__ + '.from_pretrained'} fails: {failure}")
    reference, source_info, failure = _load_tower(source, vlm) if vlm else _load(cls, source)
    if reference is None:
        return Check("load", False, f"the source does not load as {what}: {failure}")
    # keys the source itself lacks or has to spare (a ViTModel saved without its pooler) are not the output's doing
    problems = {k: sorted(set(v) - set(source_info.get(k) or ())) for k, v in info.items() if k != "error_msgs"}
    if any(problems.values()):
        return Check("load", False, f"{what} loads it with {_key_report(problems)}")
    processors = any((folder / name).is_file() for name in PROCESSOR_FILES)
    pixels_note = _processor_pixels(folder, res) if processors else None
    if pixels_note:
        return Check("load", False, pixels_note)
    head = f"{what} loads with no missing, unexpected or mismatched keys" + (
        f"; the processor makes {res.height}×{res.width} pixels" if processors else " (it has no image processor)"
    )
    if (made.mode, made.antialias) != (family.mode, family.antialias):
        method = made.mode + (", antialias" if made.antialias else "")
        return Check("load", True, f"{head}; the forward pass is not compared: the table was made with {method}, "
                     f"not the {family.name} runtime's own method, which the source runs (the table check proves it)")  # fmt: skip
    if source_grid[0] != source_grid[1]:
        return Check("load", True, f"{head}; the forward pass is not compared: transformers reads a table it "
                     f"resamples as a square grid, and the source's is {grid_text(source_grid)} (the table check "
                     "proves the table)")  # fmt: skip
    return _forward(_fresh(model.float()), _fresh(reference.float()), head, res, stored)


def _forward(model: Any, reference: Any, head: str, res: Size, stored: set[str]) -> Check:
    """Compare the output's forward pass at `res` with the source's with interpolate_pos_encoding=True:
    exactly for float32 weights, by cosine for reduced precision."""
    import torch

    pixels = torch.randn(2, 3, *res.sides, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        try:
            got = _features(model, pixels)
        except Exception as e:
            return Check(
                "load", False, f"{head}, but its forward pass at {res.height}×{res.width} fails: {first_line(e)}"
            )
        try:
            want = _features(reference, pixels, interpolate=True)
        except Exception as e:
            return Check("load", True, f"{head}; the forward pass is not compared: the source's forward at "
                         f"{res.height}×{res.width} fails in transformers ({first_line(e)})")  # fmt: skip
    if got.shape != want.shape:
        return Check("load", False, f"{head}, but its forward pass gives {list(got.shape)}, the source's "
                     f"{list(want.shape)}")  # fmt: skip
    diff = (got - want).abs().max().item()
    cosine = _cosine(torch.nn.functional.cosine_similarity(got.flatten(1), want.flatten(1)).min().item())
    figures = f"max |difference| {diff:.3g}, cosine similarity {cosine:.6f}"
    reduced = sorted(stored - {"F32", "F64"}, key=lambda d: TOLERANCE.get(d, 0.99))  # the least precise first
    if not reduced:  # float32 weights: what transformers computes, exactly
        if torch.equal(got, want):
            return Check(
                "load", True, f"{head}; the forward pass at {res.height}×{res.width} equals the source's, bit for bit"
            )
        return Check("load", False, f"{head}, but its forward pass differs from the source's ({figures})")
    need = TOLERANCE.get(reduced[0], 0.99)
    words = " and ".join(DTYPE_WORDS.get(d, d) for d in reduced)
    why = f"its weights are stored in {words}; compared in float32, cosine ≥ {need} is required"
    return Check("load", cosine >= need, f"{head}; forward pass: {figures} ({why})")


def _cosine(value: float) -> float:
    """A cosine similarity as computed in floating point (1.0000001) brought back into [-1, 1]."""
    return min(1.0, max(-1.0, value))


def _load_tower(folder: Path, family: VlmFamily) -> tuple[Any, dict[str, Any], str]:
    """A VLM's vision tower alone, in float32, as its bare family's transformers class, from the
    folder's config and the tower's tensors (the language model is never read); as `_load`."""
    import transformers

    try:
        config = read_json(folder / family.config_file)
        ckpt = open_checkpoint(folder, family.weight_files)
        fields = family.vision_only_config(config, False, ckpt.shapes)
        model = getattr(transformers, family.vision_architectures[0])(transformers.AutoConfig.for_model(**fields))
        own = set(model.state_dict())
        state = {}
        for shard in ckpt.shards:
            for t in shard.tensors:
                if family.is_vision_tensor(t.name, False):
                    name = family.vision_only_name(t.name)
                    bare = name.removeprefix("vision_model.")
                    state[bare if name not in own and bare in own else name] = load_tensor(t).float()
        result = model.load_state_dict(state, strict=False)
    except Exception as e:
        return None, {}, first_line(e)
    return model.float(), {"missing_keys": result.missing_keys, "unexpected_keys": result.unexpected_keys}, ""


def _load(cls: Any, folder: Path) -> tuple[Any, dict[str, Any], str]:
    """(model, loading info, "") in float32, or (None, {}, why not). A load that transformers refuses
    for mismatched shapes is retried, allowing them, to say which keys (transformers itself only
    points at a report it logged)."""
    import torch
    import transformers

    version = tuple(int(p) if p.isdigit() else 0 for p in transformers.__version__.split(".")[:2])
    dtype = {"dtype" if version >= (4, 56) else "torch_dtype": torch.float32}
    try:
        model, info = cls.from_pretrained(folder, output_loading_info=True, **dtype)
        return model, info, ""
    except Exception as e:
        failure = first_line(e)
    try:
        _, info = cls.from_pretrained(folder, output_loading_info=True, ignore_mismatched_sizes=True, **dtype)
    except Exception:
        return None, {}, failure
    report = {k: v for k, v in info.items() if k != "error_msgs"}
    return None, {}, _key_report(report) if any(report.values()) else failure


def _key_report(info: dict[str, Any]) -> str:
    """transformers' loading info in a few words: each kind of key with its count and first three;
    a mismatched key with the checkpoint's shape and the model's."""
    parts = []
    for kind, keys in info.items():
        keys = sorted(keys, key=str)
        if not keys:
            continue
        shown = [
            f"{k[0]} (checkpoint {list(k[1])}, model {list(k[2])})" if isinstance(k, tuple) and len(k) == 3 else str(k)
            for k in keys[:3]
        ]
        more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        parts.append(f"{len(keys)} {kind.replace('_keys', '').replace('_', ' ')} key(s): {', '.join(shown)}{more}")
    return "; ".join(parts)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or warnings from transformers while it loads: the checks report what matters."""
    try:
        from transformers.utils import logging
    except ImportError:
        yield
        return
    bars, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _model_class(config: dict[str, Any], family: Family) -> Any:
    """The transformers class that loads the checkpoint (its adapter's oracle)."""
    import transformers

    return getattr(transformers, str(family.oracle(config)))


def _fresh(model: Any) -> Any:
    """The model in fresh, aligned memory (BLAS takes other paths for memory-mapped, unaligned
    weights, which changes last bits) and in eval mode."""
    import torch

    with torch.no_grad():
        for p in list(model.parameters()) + list(model.buffers()):
            p.data = p.data.clone()
    return model.eval()


def _features(model: Any, pixels: Any, interpolate: bool = False) -> Any:
    """Image embeddings: projected (CLIPModel, SiglipModel, …WithProjection), else the last hidden
    states (or a classifier's logits). `interpolate`: at a size other than the model's own, with
    the family's run-time interpolation (a model that always interpolates, DINOv2, takes no flag)."""
    kw = {"interpolate_pos_encoding": True} if interpolate and _takes_flag(model) else {}
    if hasattr(model, "get_image_features"):
        out = model.get_image_features(pixel_values=pixels, **kw)
        return out if not hasattr(out, "pooler_output") else out.pooler_output
    got = model(pixel_values=pixels, **kw)
    for key in ("image_embeds", "last_hidden_state", "logits"):
        if getattr(got, key, None) is not None:
            return getattr(got, key)
    raise XcrError(f"{type(model).__name__} returns no image features to compare")


def _takes_flag(model: Any) -> bool:
    import inspect

    method = model.get_image_features if hasattr(model, "get_image_features") else model.forward
    return "interpolate_pos_encoding" in inspect.signature(method).parameters


def _embedding(model: Any, pixels: Any) -> Any:
    """One vector per image: projected where the model projects, else the pooled output."""
    if hasattr(model, "get_image_features"):
        out = model.get_image_features(pixel_values=pixels)
        return out if not hasattr(out, "pooler_output") else out.pooler_output
    got = model(pixel_values=pixels)
    for key in ("image_embeds", "pooler_output", "logits"):
        if getattr(got, key, None) is not None:
            return getattr(got, key)
    return got.last_hidden_state[:, 0]


def _processor_pixels(folder: Path, res: Size) -> str | None:
    """None when the folder's image processor makes `res` pixels; else what it makes."""
    from PIL import Image
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(folder)  # type: ignore[no-untyped-call]
    except Exception as e:
        return f"its image processor does not load: {first_line(e)}"
    shape = tuple(
        processor(images=Image.new("RGB", (640, 480), (90, 120, 200)), return_tensors="pt")["pixel_values"].shape
    )
    return (
        None
        if shape[-2:] == res.sides
        else f"its image processor makes {shape[-2]}×{shape[-1]} pixels, not {res.height}×{res.width}"
    )


# ---------------------------------------------------------------- drift


def drift(folder: Path, source: Path, config: dict[str, Any], family: Family, images: Path) -> Drift:
    """Cosine similarity of each image's embedding by the source (at its resolution, through its
    processor) and by the output (at the new one, through its processor)."""
    try:
        from PIL import Image
        from transformers import AutoImageProcessor
    except ImportError as e:
        raise XcrError(f"--images needs transformers and pillow: {VERIFY_EXTRA}") from e
    import torch

    if family.oracle(config) is None:
        raise UsageError(f"--images needs a checkpoint transformers loads; {family.name} checkpoints are not")
    if not images.exists():
        raise UsageError(f"{arg('images', images)} does not exist; give a folder of images")
    if not images.is_dir():
        raise UsageError(f"{arg('images', images)} is not a folder of images; give the folder that holds it")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UsageError(f"{images} holds no images ({', '.join(IMAGE_SUFFIXES)}); give a folder that does")
    cls = _model_class(config, family)
    pairs = []
    for root in (source, folder):
        if not any((root / name).is_file() for name in PROCESSOR_FILES):
            raise InputError(
                f"--images runs each checkpoint's own image processor, and {root} has none "
                f"({' or '.join(PROCESSOR_FILES)}); leave --images out"
            )
        pairs.append((AutoImageProcessor.from_pretrained(root), _fresh(cls.from_pretrained(root).float())))  # type: ignore[no-untyped-call]
    scores = []
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(path).convert("RGB")
        except Image.DecompressionBombError as e:
            raise InputError(
                f"{path} is larger than PIL's safety limit ({first_line(e)}); shrink it or move it out"
            ) from e
        except Exception as e:
            raise InputError(f"{path} is not an image PIL can read ({first_line(e)}); fix it or move it out") from e
        with torch.no_grad():
            a, b = (_embedding(m, p(images=image, return_tensors="pt")["pixel_values"]) for p, m in pairs)
        scores.append(
            (_cosine(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()), path.name)
        )
    values = [s for s, _ in scores]
    worst = [{"file": n, "cosine": round(s, 6)} for s, n in sorted(scores)[:3]]
    return Drift(len(values), sum(values) / len(values), min(values), worst)
