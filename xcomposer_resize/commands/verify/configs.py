"""The checks of what the files state: 4. configs (the model config, the processor files and the
carried files against the source's) and 5. tokens (a VLM's image-token counts and anyres tiles)."""

from __future__ import annotations

import copy
import filecmp
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...checkpoint.dtypes import DTYPE_WORDS, WORD_DTYPES
from ...checkpoint.source import is_metadata
from ...checkpoint.weights import SAFETENSORS_INDEX, is_weight_file, not_a_file, open_checkpoint, read_json, walk
from ...conversion.card import CARD
from ...conversion.configs import DTYPE_KEYS, MISSING, Path_, diff, same_json, vision_sizes
from ...conversion.plan import locate
from ...errors import InputError
from ...families import CONFIG_FILES, Family, VlmFamily, timm_arch
from ...families.transformers import PROCESSOR_FILES, SIZE_KEYS
from ...size import Grid, Size, grid_text
from .subject import Check, Expected, Made, Subject, check, is_parameter, some, stored_dtypes

if TYPE_CHECKING:
    from ...checkpoint.source import Source


@check("configs")
def _check_configs(subject: Subject) -> Check:
    """Every file of the output but the weights, against the source's: the model config key by key
    (the keys xcr rewrote apart, each checked for what it must state), the processor files key by
    key (their sizes apart, each checked), every other file byte for byte; and config.json, the
    processor files and the weights' grid agree on the resolution; a dtype the config states is
    the one the weights are stored in."""
    folder, family, config, res = subject.folder, subject.family, subject.config, subject.res
    grid, prefix, problem, expected = subject.grid, subject.prefix, subject.config_problem, subject.expected
    problems = [problem] if problem else []
    named = {id(v): k for k, v in config.items() if isinstance(v, dict)}
    for block in family.vision_config_blocks(config):
        if block.get("image_size") != family.size_json(res):
            where = f"{named[id(block)]}." if id(block) in named else ""
            problems.append(
                f"{family.config_file} has {where}image_size {json.dumps(block.get('image_size'))}, not {json.dumps(family.size_json(res))}"
            )
    if problem is None and not family.vision_config_blocks(config):  # sizes stated elsewhere (timm)
        stated = vision_sizes(config, family)
        if stated.image_size != res or stated.missing:
            problems.append(f"config.json says {stated.image_size.px}" + (" (by default)" if stated.missing else ""))
    try:
        table = locate(open_checkpoint(folder, family.weight_files).shapes, family)
        rows = table.rows if table.pos else None
        if rows != prefix + grid[0] * grid[1]:
            problems.append(f"the weights' table has {rows} rows, not {prefix + grid[0] * grid[1]}")
    except InputError as e:
        problems.append(e.message)
    base = _expected_config(family, expected.config, expected.made, expected.ckpt.shapes)
    rewritten, found = _config_keys(family, config, base, res, expected)
    problems += found
    problems += _dtype_problems(family.config_file, config, stored_dtypes(folder), base, expected)
    sizes, files, found = _processors(folder, family, res, expected.source.folder, expected.made.vision_only)
    problems += found
    carried, found = _carried(folder, family, expected.source, grid, expected.made.vision_only)
    problems += found
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return Check("configs", False, "; ".join(problems[:3]) + more)
    what = f"{family.config_file} is the source's" + (
        f" vision config lifted to the top level (model_type {base['model_type']}, architectures "
        f"{_shown(base['architectures'])})"
        if base is not expected.config
        else ""
    )
    keys = f", key for key, but for {some(rewritten, 6)}, which xcr rewrote" if rewritten else ", key for key"
    sizes_of = "its sizes" if len(files) == 1 else "their sizes"
    return Check(
        "configs",
        True,
        f"{what}{keys}; "
        + (f"{some(files, 2)} {'is' if len(files) == 1 else 'are'} the source's but for {sizes_of}; " if files else "")
        + (f"{carried} carried file(s) byte-identical to the source's; " if carried else "")
        + f"{family.config_file}"
        + (f", {sizes} processor input size(s)" if sizes else "")
        + f" and the weights' {grid_text(grid)} grid all say {res.px}",
    )


def _expected_config(
    family: Family, src: dict[str, Any], made: Made, shapes: dict[str, tuple[int, ...]]
) -> dict[str, Any]:
    """The source's config as the output's starts from: as it is, or, for a vision-only output, the
    vision tower's config its adapter makes of it (the vision block at the top level, with the
    architecture the record names)."""
    if made.vision_only and family.has_text:
        return family.vision_only_config(src, made.with_projection, shapes)
    return src


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _config_keys(family: Family, config: dict[str, Any], base: dict[str, Any], res: Size,
                 expected: Expected) -> tuple[list[str], list[str]]:  # fmt: skip
    """(the keys xcr rewrote, problems): every key of `config` equals `base`'s (the source's),
    but the size keys the family's adapter sets (each must state `res`, or for a key that scales
    with it, keep the source's relation) and, with a recorded --dtype, the dtype keys (the
    recorded dtype)."""
    what = family.config_file
    adapted = copy.deepcopy(base)
    try:
        family.set_size(adapted, res, expected.patch)
    except (InputError, TypeError, ValueError) as e:  # a source config the adapter cannot state a size in
        return [], [f"the source's {what} takes no size: {e}"]
    sizes = {path: value for path, _, value in diff(base, adapted)}  # the keys the adapter sets: which, not what
    problems, rewritten = [], []
    for path, adapter_value in sizes.items():
        value = _get(config, path)
        problem = _size_key(path, value, base, res, expected.patch)
        if problem is _UNKNOWN:  # a size key verify has no rule for: the adapter's own value (said in the docs)
            problem = None if same_json(value, adapter_value) else f"is {_shown(value)}, not {_shown(adapter_value)}"
        if problem:
            problems.append(f"{what} {_dotted(path)} {problem}")
        elif not same_json(value, _get(base, path)):
            rewritten.append(_dotted(path))
    recast = expected.made.dtype != "keep" and family.library == "transformers"
    for path, want, got in diff(base, config):
        if path in sizes:
            continue
        if recast and path[-1] in DTYPE_KEYS and len(path) <= 2 and got == expected.made.dtype:
            rewritten.append(_dotted(path))
        else:
            problems.append(_difference(what, path, want, got))
    return rewritten, problems


_UNKNOWN: Any = object()


def _size_key(path: Path_, value: Any, base: dict[str, Any], res: Size, patch: int) -> Any:
    """What is wrong with the value of the size key at `path` (None: nothing), checked by what the
    key means, not by xcr's rewrite: an image size states `res`; an input size [C, H, W] states it
    with the source's channels; a larger test size keeps its share of the input size; a patch size
    is the source's. _UNKNOWN for a key with no rule here."""
    key, old = path[-1], _get(base, path)
    if value is MISSING:
        return "is missing"
    if key in ("image_size", "img_size", "size"):
        return None if Size.from_json(value) == res else f"is {_shown(value)}, not {_shown(res.json())}"
    if key == "input_size":
        want = [old[0] if isinstance(old, list) and old else 3, *res.sides]
        return None if value == want else f"is {_shown(value)}, not {_shown(want)}"
    if key == "test_input_size":
        given = _get(base, (*path[:-1], "input_size"))
        if not (_ints(old, 3) and _ints(given, 3) and _ints(value, 3)):
            return f"is {_shown(value)}; the source's is {_shown(old)} for an input size {_shown(given)}"
        want = [old[0], *(old[i] * res.sides[i - 1] / given[i] for i in (1, 2))]
        if value[0] == old[0] and all(abs(value[i] - want[i]) <= 1 for i in (1, 2)):
            return None
        return (f"is {_shown(value)}; the source's {_shown(old)} for its {_shown(given)} input makes "
                f"{[old[0], *(round(w) for w in want[1:])]} at {res.px}")  # fmt: skip
    if key == "patch_size":
        return None if value == patch else f"is {_shown(value)}, not the source's {patch}"
    if key == "timm_model_name":  # open_clip 3.3.0 builds a timm trunk at the size its architecture's name states
        _arch, stem, size = timm_arch(str(value))
        named = f"{timm_arch(str(old))[1]}_{res.height}"
        return (
            None
            if f"{stem}_{size}" == named
            else f"is {_shown(value)}, not {_shown(named)} (timm's network at {res.px})"
        )
    return _UNKNOWN


def _ints(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n and all(type(v) is int and v > 0 for v in value)


def _dtype_problems(what: str, config: dict[str, Any], stored: set[str], base: dict[str, Any],
                    expected: Expected) -> list[str]:  # fmt: skip
    """A dtype the config states (top level or a sub-config) that the weights are not stored in:
    transformers loads them in that dtype. Unless the source's config says the same of its own
    weights (then the output is as the source is)."""
    src_stored = {t.dtype for t in (t for s in expected.ckpt.shards for t in s.tensors) if is_parameter(t.dtype)}
    problems = []
    for path, value in _dtype_statements(config):
        if not stored or not isinstance(value, str) or WORD_DTYPES.get(value) in stored | {None}:
            continue
        if _get(base, path) == value and WORD_DTYPES[value] not in src_stored:
            continue  # the source's config contradicts its weights the same way
        words = ", ".join(sorted(DTYPE_WORDS.get(d, d) for d in stored))
        problems.append(f"{what} says {_dotted(path)} {value}, but the weights are stored in {words} "
                        f"(transformers would load them as {value})")  # fmt: skip
    return problems


def _dtype_statements(config: dict[str, Any]) -> list[tuple[Path_, Any]]:
    """Every dtype key of the top level and of the sub-configs, with its value."""
    found: list[tuple[Path_, Any]] = [((key,), config[key]) for key in DTYPE_KEYS if key in config]
    for name, block in config.items():
        if isinstance(block, dict):
            found += [((name, key), block[key]) for key in DTYPE_KEYS if key in block]
    return found


def _processors(folder: Path, family: Family, res: Size, source: Path,
                alone: bool = False) -> tuple[int, list[str], list[str]]:  # fmt: skip
    """(input sizes checked, processor files compared, problems): every processor file of the
    source is in the output (transformers families: timm and open_clip state their own sizes and
    xcr carries none) and equals it key by key but for its sizes, which state `res` in the
    source's form; a resize before a crop keeps the source's ratio to its crop."""
    problems: list[str] = []
    try:
        ours = {rel: path for path, rel in walk(folder) if path.name in PROCESSOR_FILES}
        theirs = {rel: path for path, rel in walk(source) if path.name in PROCESSOR_FILES and path.is_file()}
    except InputError as e:
        return 0, [], [e.message]
    if family.library != "transformers":
        theirs = {}
    try:
        expected = {rel: read_json(path) for rel, path in theirs.items()}
    except InputError as e:
        return 0, [], [e.message]
    if alone:  # a vision-only output: the processor files its family makes of the source's (a VLM's tower)
        expected = family.vision_only_processors(expected)
        theirs = dict.fromkeys(expected, source)
    problems += [f"{rel} is missing (the source has it)" for rel in sorted(theirs.keys() - ours.keys())]
    problems += [
        f"{rel} is not in the source" + (f" ({family.name} outputs carry no processor file)" if not theirs else "")
        for rel in sorted(ours.keys() - theirs.keys())
    ]
    sizes = 0
    for rel in sorted(ours.keys() & theirs.keys()):
        try:
            data, src = read_json(ours[rel]), expected[rel]
        except InputError as e:
            problems.append(e.message)
            continue
        n, found = _processor(rel, data, src, res, family.token_keys() if isinstance(family, VlmFamily) else ())
        sizes += n
        problems += found
    return sizes, sorted(ours.keys() & theirs.keys()), problems


def _size_blocks(data: dict[str, Any]) -> list[tuple[Path_, dict[str, Any]]]:
    """The blocks of a processor file that may state sizes: the top level, and the blocks under a
    `…processor` key (processor_config.json's `image_processor`)."""
    return [((), data)] + [((k,), v) for k, v in data.items() if k.endswith("processor") and isinstance(v, dict)]


def _processor(rel: str, data: dict[str, Any], src: dict[str, Any], res: Size,
               tokens: tuple[str, ...] = ()) -> tuple[int, list[str]]:  # fmt: skip
    """One processor file against the source's: (input sizes checked, problems). `tokens`: keys a
    VLM's token counts set (the tokens check judges them)."""
    size_paths = {(*where, key) for where, _ in _size_blocks(src) + _size_blocks(data) for key in SIZE_KEYS + tokens}
    problems = []
    for path, want, got in diff(src, data):
        if any(path[: len(p)] == p for p in size_paths):
            continue
        problems.append(_difference(rel, path, want, got))
    sizes = 0
    for where, theirs in _size_blocks(src):
        ours = _get(data, where)
        if not isinstance(ours, dict):
            continue  # the block is missing: said above
        crops = theirs.get("crop_size") is not None and theirs.get("do_center_crop", True) is not False
        for key in SIZE_KEYS:
            s, o = theirs.get(key, MISSING), ours.get(key, MISSING)
            said = f"{rel} has {_dotted((*where, key))} {_shown(o)}"
            if s in (None, MISSING) and o in (None, MISSING):
                continue
            if _form(s) != _form(o):
                problems.append(f"{said}, not in the source's form {_shown(s)}")
                continue
            sizes += 1
            crop = _hw(theirs.get("crop_size"))
            if key == "size" and crops and crop is not None:
                problems += _resize_before_crop(said, o, s, crop, res)
            elif any(type(v) is not int or v != side for v, side in _sides(o, res)):
                problems.append(f"{said}, not {res.px}")
    return sizes, problems


def _resize_before_crop(said: str, value: Any, src: Any, crop: tuple[int, int], res: Size) -> list[str]:
    """A resize before a crop of `res`: each number keeps the source's ratio to its crop `crop`
    (facebook/dinov2-*: 256 for a 224 crop, so 512 for 448), within a pixel of rounding."""
    for (k, v), (_, v0) in zip(_numbers(value), _numbers(src), strict=True):
        side = 1 if k in ("width", 1) else 0
        want = v0 * res.sides[side] / crop[side] if type(v0) is int else None
        if type(v) is int and want is not None and abs(v - want) <= 1:
            continue
        small = f", smaller than its {res.px} crop" if type(v) is int and v < res.sides[side] else ""
        keeps = (
            f"; the source resizes to {_shown(src)} for a {crop[0]}×{crop[1]} crop, which is {round(want)} at {res.px}"
            if want
            else ""
        )
        return [f"{said}{small}{keeps}"]
    return []


def _numbers(value: Any) -> list[tuple[Any, Any]]:
    """The numbers of a size with what each stands for: a dict's keys, a list's places, 0 for an int."""
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list):
        return list(enumerate(value))
    return [(0, value)]


def _hw(value: Any) -> tuple[int, int] | None:
    """A crop size as (height, width), or None when it is not one."""
    if type(value) is int:
        return value, value
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
        return value[0], value[1]
    if isinstance(value, dict):
        if type(value.get("height")) is int and type(value.get("width")) is int:
            return value["height"], value["width"]
        edge = value.get("shortest_edge")
        if type(edge) is int:
            return edge, edge
    return None


def _form(value: Any) -> Any:
    """The form of a size: int, [h, w], or a dict of these keys."""
    if isinstance(value, dict):
        return ("dict", tuple(sorted(value)))
    if isinstance(value, list):
        return ("list", len(value))
    return type(value).__name__


def _sides(value: Any, res: Size) -> list[tuple[Any, int]]:
    """Each number of a processor size paired with the side of `res` it should state."""
    if isinstance(value, dict):
        return [(v, res.width if k == "width" else res.height) for k, v in value.items()]
    if isinstance(value, list):
        return [(v, res.sides[i] if i < 2 else res.height) for i, v in enumerate(value)]
    return [(value, res.height)]


def _code_problems(rel: str, ours: str, theirs: str, grid: Grid) -> list[str]:
    """A model code file whose literal states the grid side (XComposer2's `new_size = N`): the source's
    lines but that one, which says the output's side."""
    a, b = theirs.splitlines(), ours.splitlines()
    changed = [(x, y) for x, y in zip(a, b, strict=False) if x != y]
    if len(a) != len(b) or len(changed) > 1:
        return [f"{rel} differs from the source's in more than its new_size line"]
    wanted = f"new_size = {grid[0]}"
    line = changed[0][1].strip() if changed else next((x.strip() for x in b if x.strip().startswith("new_size =")), "")
    return [] if line == wanted else [f"{rel} has `{line}`, not `{wanted}`"]


def _carried(
    folder: Path, family: Family, source: Source, grid: Grid, made_alone: bool = False
) -> tuple[int, list[str]]:
    """(files compared, problems): every file xcr carries from the source (tokenizer, vocabulary,
    licence, subfolder files: all but the weights, configs, processor files, model card and hidden
    files; of a Hub snapshot, the files xcr downloads) is in the output with the source's bytes,
    and the output holds no other file (weights of another format among them)."""
    problems: list[str] = []
    try:
        theirs = {rel: path for path, rel in walk(source.folder) if _carries(path, rel)}
        if made_alone:
            theirs = {rel: path for rel, path in theirs.items() if not family.vision_only_drops(rel)}
        ours = list(walk(folder))
    except InputError as e:
        return 0, [e.message]
    if source.repo_id:  # a Hub snapshot: xcr downloads its metadata files, and others may be in the cache
        theirs = {rel: path for rel, path in theirs.items() if is_metadata(rel)}
    seen, same = set(), 0
    for path, rel in ours:
        name = path.name
        if rel in (family.config_file, CARD, SAFETENSORS_INDEX) or name in PROCESSOR_FILES:
            continue  # compared above, or by the files check
        if name.endswith(".safetensors") or (name.startswith(".") and name != ".gitattributes"):
            continue  # the files check; hidden files no loader reads
        seen.add(rel)
        what = not_a_file(path)
        if what:
            problems.append(f"{rel} is {what}")
        elif is_weight_file(name) or rel in CONFIG_FILES:
            problems.append(f"{rel} is not xcr's: xcr writes safetensors weights and one config, and a loader may "
                            "read this instead")  # fmt: skip
        elif not (source.folder / rel).is_file():
            problems.append(f"{rel} is not in the source")
        elif rel in family.code_files:
            problems += _code_problems(rel, path.read_text(), (source.folder / rel).read_text(), grid)
        elif not filecmp.cmp(path, source.folder / rel, shallow=False):
            problems.append(f"{rel} differs from the source's")
        else:
            same += 1
    problems += [f"{rel} is missing (the source has it)" for rel in sorted(theirs.keys() - seen)]
    return same, problems


def _carries(path: Path, rel: str) -> bool:
    """Whether xcr carries this file of a source folder over to an output unchanged."""
    name = path.name
    if rel in CONFIG_FILES or rel == CARD or name in PROCESSOR_FILES or is_weight_file(name):
        return False
    return not (name.startswith(".") and name != ".gitattributes") and not_a_file(path) is None and path.is_file()


def _get(data: Any, path: Path_) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return MISSING
        data = data[key]
    return data


def _dotted(path: Path_) -> str:
    return ".".join(path) or "(the whole file)"


def _difference(what: str, path: Path_, want: Any, got: Any) -> str:
    """One difference between a file and the source's, in words."""
    if got is MISSING:
        return f"{what} lacks {_dotted(path)} (the source's is {_shown(want)})"
    if want is MISSING:
        return f"{what} has {_dotted(path)} {_shown(got)}, which the source's has not"
    return f"{what} has {_dotted(path)} {_shown(got)}, the source's {_shown(want)}"


def _shown(value: Any) -> str:
    text = repr(value) if value is MISSING else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:79] + "…"


# ---------------------------------------------------------------- 5. image tokens (a VLM)


@check("tokens")
def _check_tokens(subject: Subject) -> Check | None:
    """A VLM: every image-token count its config and processor files state is the count the output's
    grid gives, and the anyres resolutions (LLaVA-NeXT), in config.json and in each processor file, are
    the source's scaled from its tile to the new one (so the model and the processor cut the same tiles)."""
    family, config, grid, res = subject.family, subject.config, subject.grid, subject.res
    if not isinstance(family, VlmFamily) or family.vision_only_form(config)[0]:
        return None
    want = family.tokens(config, grid)
    stated: list[tuple[str, Any]] = []
    for where, block in [("", config)] + [(f"{k}.", v) for k, v in config.items() if isinstance(v, dict)]:
        stated += [
            (f"{family.config_file}: {where}{k}", block[k])
            for k in ("image_seq_length", "num_image_tokens")
            if k in block
        ]
    source = subject.expected.config
    old = vision_sizes(source, family).image_size.height  # the source's tile
    pinpoints = [(family.config_file, config.get("image_grid_pinpoints"), source.get("image_grid_pinpoints"))]
    for path, rel in walk(subject.folder):
        if path.name in PROCESSOR_FILES:
            theirs = subject.expected.source.folder / rel
            src_blocks = dict(_size_blocks(read_json(theirs))) if theirs.is_file() else {}
            for inner, block in _size_blocks(read_json(path)):
                at = f"{rel}: {_dotted(inner) + '.' if inner else ''}"
                stated += [(f"{at}image_seq_length", block["image_seq_length"])] if "image_seq_length" in block else []
                was = src_blocks.get(inner, {}).get("image_grid_pinpoints")
                if was is None and "image_grid_pinpoints" in block:  # the class default, stated: the model's
                    was = source.get("image_grid_pinpoints")
                pinpoints.append((rel, block.get("image_grid_pinpoints"), was))
    pinpoints = [p for p in pinpoints if p[1] is not None or p[2] is not None]
    problems = [f"{where} is {value!r}, not {want}" for where, value in stated if value != want]
    for where, points, was in pinpoints:  # the model's tiles and the processor's must both follow the tile
        scaled = [[v * res.sides[i] // old for i, v in enumerate(p)] for p in was] if isinstance(was, list) else was
        if points != scaled:
            problems.append(f"{where}: image_grid_pinpoints {json.dumps(points)}, not the source's scaled to "
                            f"{res.px} tiles {json.dumps(scaled)}")  # fmt: skip
    if not stated and not pinpoints:
        return Check("tokens", True, f"{grid_text(grid)} grid: {want} image tokens per image; no file states a count "
                     "(the model counts them from the grid)")  # fmt: skip
    said = f"{len(stated)} statement(s) of the image-token count" + (
        f" and {len(pinpoints)} anyres list(s)" if pinpoints else ""
    )
    if problems:
        return Check("tokens", False, "; ".join(problems))
    return Check("tokens", True, f"{grid_text(grid)} grid: {want} image tokens per image (per tile); {said} agree")
