"""xcr verify: every check can fail. Real outputs (tiny sources built here, converted by `resize`) are
mutated the ways issue 16's mutation testing and a stranger's probing found, and each mutation must
fail the check it is for, with a detail that names what is wrong; the same output unmutated passes.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.builders import build
from tests.family_builders import build_family, build_open_clip, build_timm
from tests.test_cli import one_error_line
from xcomposer_resize import resize
from xcomposer_resize.checkpoint.safetensors import read_header
from xcomposer_resize.commands.verify import Verification, verify

TOKENIZER = b'{"version": "1.0", "model": {"type": "BPE"}}\n'
POS = "vision_model.embeddings.position_embedding.weight"


def _clip(folder: Path) -> Path:
    """The default CLIP layout, with a tokenizer.json and a file in a subfolder to carry."""
    build(folder, extra_files={"tokenizer.json": TOKENIZER})
    (folder / "chat").mkdir()
    (folder / "chat" / "template.jinja").write_text("{{ messages }}\n")
    return folder


def _timm(folder: Path) -> Path:
    """A timm layout with a test size, and a transformers processor file beside it (which states the
    old size and which xcr leaves behind)."""
    build_timm(folder, prefix="cls+reg4", model_args=True)
    (folder / "preprocessor_config.json").write_text(json.dumps({"crop_size": 224, "size": 224}) + "\n")
    config = json.loads((folder / "config.json").read_text())
    config["pretrained_cfg"]["test_input_size"] = [3, 256, 256]
    (folder / "config.json").write_text(json.dumps(config, indent=4) + "\n")
    return folder


def _saved(folder: Path) -> Path:
    """A sharded checkpoint as transformers' save_pretrained writes it: its index states
    total_parameters beside total_size."""
    from transformers import CLIPConfig, CLIPModel

    from tests.builders import TEXT, VISION

    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=TEXT, vision_config=dict(VISION, image_size=336, patch_size=14)))
    model.save_pretrained(folder, max_shard_size="40KB")
    return folder


# layout → (source builder, --res, resize options)
LAYOUTS: dict[str, tuple[Callable[[Path], Path], int, dict[str, Any]]] = {
    "clip": (_clip, 490, {}),
    "clip-bin": (lambda p: build(p, fmt="bin"), 490, {}),
    "clip-sharded": (lambda p: build(p, fmt="sharded"), 224, {}),
    "clip-vision-only": (_clip, 490, {"vision_only": True}),
    "clip-bfloat16": (_clip, 490, {"dtype": "bfloat16"}),
    "saved-sharded": (_saved, 490, {}),
    "dinov2": (lambda p: build_family(p, "dinov2"), 448, {}),
    "siglip": (lambda p: build_family(p, "siglip"), 448, {}),
    "timm": (_timm, 448, {}),
    "open_clip": (lambda p: build_open_clip(p), 384, {}),
    "open_clip-trunk": (lambda p: build_open_clip(p, trunk="siglip"), 224, {}),  # timm has it at 224, 378, 384
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Path]]:
    """(source, output) of a layout, each built and converted once for the module."""
    root = tmp_path_factory.mktemp("layouts")
    cache: dict[str, tuple[Path, Path]] = {}

    def get(layout: str) -> tuple[Path, Path]:
        if layout not in cache:
            builder, res, options = LAYOUTS[layout]
            src = builder(root / f"{layout}-src")
            resize(src, res, root / f"{layout}-out", **options)
            cache[layout] = src, root / f"{layout}-out"
        return cache[layout]

    return get


@pytest.fixture
def output(made: Callable[[str], tuple[Path, Path]], tmp_path: Path) -> Callable[[str], tuple[Path, Path]]:
    """(source, a fresh copy of its output to mutate) for a layout."""

    def get(layout: str) -> tuple[Path, Path]:
        src, out = made(layout)
        copy = tmp_path / "out"
        shutil.copytree(out, copy)
        return src, copy

    return get


def by_name(found: Verification) -> dict[str, Any]:
    return {c.check: c for c in found.checks}


def failed(out: Path, src: Path, check: str, *details: str) -> Verification:
    """Verify `out`: `check` fails and its detail holds every one of `details`."""
    found = verify(out, src)
    assert not found.ok and check in found.failed, found.checks
    detail = by_name(found)[check].detail
    for text in details:
        assert text in detail, detail
    return found


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


def edit_tensors(
    out: Path, change: Callable[[dict[str, torch.Tensor]], None], metadata: dict[str, str] | None = None
) -> None:
    """Rewrite the weight file of `out` with `change` applied to its tensors (and other header metadata)."""
    from safetensors.torch import load_file, save_file

    (path,) = out.glob("*.safetensors")
    tensors = dict(load_file(str(path)))
    change(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"} if metadata is None else metadata)


def edit_record(out: Path, old: str, new: str) -> None:
    card = (out / "README.md").read_text()
    assert f"  {old}\n" in card
    (out / "README.md").write_text(card.replace(f"  {old}\n", f"  {new}\n", 1))


def no_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers → ImportError


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_passes_unmutated(made: Callable[[str], tuple[Path, Path]], layout: str) -> None:
    src, out = made(layout)
    found = verify(out, src)
    assert found.ok, found.checks
    checks = by_name(found)
    assert "no more, no fewer" in checks["tensors"].detail
    assert "key for key" in checks["configs"].detail


# ---------------------------------------------------------------- the tensor set, both ways


@pytest.mark.parametrize(
    ("layout", "transformers"),
    [("timm", True), ("open_clip", True), ("open_clip-trunk", True), ("clip", False), ("dinov2", False),
     ("siglip", False), ("clip-vision-only", False)],
)  # fmt: skip
def test_a_missing_tensor_fails_the_tensors_check(
    output: Any, monkeypatch: pytest.MonkeyPatch, layout: str, transformers: bool
) -> None:
    """timm and open_clip have no load check, and without transformers no family has one: the
    tensors check alone must see a tensor gone."""
    src, out = output(layout)
    if not transformers:
        no_transformers(monkeypatch)
    gone: list[str] = []

    def drop(tensors: dict[str, torch.Tensor]) -> None:
        gone.append(next(n for n in sorted(tensors) if "norm" in n or "ln_" in n))
        del tensors[gone[0]]

    edit_tensors(out, drop)
    found = failed(out, src, "tensors", "1 of the ", f"tensors are missing ({gone[0]})")
    assert found.failed == ["tensors"]


def test_a_tensor_the_source_lacks_fails(output: Any) -> None:
    src, out = output("timm")
    edit_tensors(out, lambda t: t.update({"head_dist.weight": torch.zeros(10, 32)}))
    failed(out, src, "tensors", "1 tensor(s) the source does not have (head_dist.weight)")


def test_a_vision_only_output_holds_the_vision_tower_alone(output: Any, made: Any) -> None:
    src, out = output("clip-vision-only")
    edit_tensors(out, lambda t: t.update({"logit_scale": torch.tensor(2.6592)}))
    failed(out, src, "tensors", "1 tensor(s) outside the vision tower (logit_scale), which a vision-only output drops")


def test_position_ids_must_count_the_table_rows(output: Any) -> None:
    src, out = output("clip")
    ids = "vision_model.embeddings.position_ids"
    edit_tensors(out, lambda t: t.update({ids: torch.arange(577).unsqueeze(0)}))
    failed(out, src, "tensors", f"{ids} is I64 [1, 577]; the table has 1226 rows, so the ids must be I64 [1, 1226]")
    edit_tensors(out, lambda t: t.update({ids: torch.arange(1226).flip(0).unsqueeze(0)}))
    failed(out, src, "tensors", f"{ids} is not arange(1226)")


# ---------------------------------------------------------------- dtype: the config against the weights


def test_a_config_dtype_that_contradicts_the_weights(output: Any) -> None:
    """transformers loads the weights in the dtype the config states: bfloat16 beside F32 weights is
    a checkpoint that runs in bfloat16. The configs check says so; the load check judges exactness
    by what the files store (float32), and does not call the weights bfloat16."""
    src, out = output("clip")
    edit_json(out / "config.json", lambda c: c.update(torch_dtype="bfloat16"))
    found = failed(out, src, "configs", "config.json says torch_dtype bfloat16, but the weights are stored in float32")
    assert 'torch_dtype "bfloat16", the source\'s "float32"' in by_name(found)["configs"].detail
    load = by_name(found)["load"]
    assert load.ok is True and "bit for bit" in load.detail and "bfloat16" not in load.detail


def test_a_recorded_cast_must_be_what_the_config_states(output: Any) -> None:
    src, out = output("clip-bfloat16")
    assert "torch_dtype, which xcr rewrote" in by_name(verify(out, src))["configs"].detail
    edit_json(out / "config.json", lambda c: c.update(torch_dtype="float16"))
    failed(out, src, "configs", "says torch_dtype float16, but the weights are stored in bfloat16",
           'has torch_dtype "float16", the source\'s "float32"')  # fmt: skip


def test_a_source_that_contradicts_itself_is_not_the_outputs_fault(tmp_path: Path) -> None:
    """A source whose config states float16 beside F32 weights: its output keeps both, as it is."""
    src = _clip(tmp_path / "src")
    edit_json(src / "config.json", lambda c: c.update(torch_dtype="float16"))
    resize(src, 490, tmp_path / "out")
    found = verify(tmp_path / "out", src)
    assert found.ok, found.checks


# ---------------------------------------------------------------- config keys other than sizes


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return change


@pytest.mark.parametrize(
    ("layout", "key", "value", "said"),
    [
        ("timm", "global_pool", "avg", 'config.json has global_pool "avg", the source\'s "token"'),
        ("timm", "pretrained_cfg.mean", [0.4, 0.5, 0.5], "config.json has pretrained_cfg.mean [0.4, 0.5, 0.5]"),
        ("timm", "model_args.img_size", 224, "config.json model_args.img_size is 224, not 448"),
        ("timm", "pretrained_cfg.test_input_size", [3, 448, 448],
         "pretrained_cfg.test_input_size is [3, 448, 448]; the source's [3, 256, 256] for its [3, 224, 224] input "
         "makes [3, 512, 512] at 448 px"),
        ("open_clip", "model_cfg.quick_gelu", True,
         "open_clip_config.json has model_cfg.quick_gelu true, which the source's has not"),
        ("open_clip", "preprocess_cfg.mean", [0.5, 0.5, 0.5], "open_clip_config.json has preprocess_cfg.mean"),
        ("open_clip", "model_cfg.vision_cfg.patch_size", 14, "open_clip_config.json has model_cfg.vision_cfg.patch_size 14, the source's 16"),
        ("open_clip-trunk", "model_cfg.vision_cfg.timm_model_name", "vit_so400m_patch14_siglip_384",
         'open_clip_config.json model_cfg.vision_cfg.timm_model_name is "vit_so400m_patch14_siglip_384", not '
         '"vit_so400m_patch14_siglip_224" (timm\'s network at 224 px)'),
        ("open_clip-trunk", "model_cfg.vision_cfg.timm_pool", "token",
         'model_cfg.vision_cfg.timm_pool "token", the source\'s "map"'),
        ("clip", "vision_config.hidden_act", "gelu", 'vision_config.hidden_act "gelu", the source\'s "quick_gelu"'),
        ("clip", "vision_config_dict.image_size", 336, "config.json vision_config_dict.image_size is 336, not 490"),
        ("clip-vision-only", "architectures", ["CLIPVisionModelWithProjection"],
         'config.json has architectures ["CLIPVisionModelWithProjection"], the source\'s ["CLIPVisionModel"]'),
        ("dinov2", "layer_norm_eps", 0.01, "config.json has layer_norm_eps 0.01, the source's 1e-06"),
    ],
)  # fmt: skip
def test_every_config_key_is_the_sources_but_the_sizes(output: Any, layout: str, key: str, value: Any,
                                                       said: str) -> None:  # fmt: skip
    src, out = output(layout)
    config = "open_clip_config.json" if layout.startswith("open_clip") else "config.json"
    edit_json(out / config, _set(key, value))
    failed(out, src, "configs", said)


def test_the_rewritten_keys_are_named(made: Any) -> None:
    src, out = made("timm")
    assert ("config.json is the source's, key for key, but for pretrained_cfg.input_size, "
            "pretrained_cfg.test_input_size, model_args.img_size, which xcr rewrote") in by_name(
        verify(out, src)
    )["configs"].detail  # fmt: skip


def test_a_dropped_config_key_fails(output: Any) -> None:
    src, out = output("clip")
    edit_json(out / "config.json", lambda c: c["text_config"].pop("hidden_act"))
    failed(out, src, "configs", 'config.json lacks text_config.hidden_act (the source\'s is "quick_gelu")')


# ---------------------------------------------------------------- processor files and carried files


@pytest.mark.parametrize(
    ("mutate", "said"),
    [
        (lambda o: edit_json(o / "preprocessor_config.json", _set("image_mean", [0.5, 0.5, 0.5])),
         "preprocessor_config.json has image_mean [0.5, 0.5, 0.5], the source's [0.48145466"),
        (lambda o: edit_json(o / "preprocessor_config.json", _set("resample", 2)),
         "preprocessor_config.json has resample 2, the source's 3"),
        (lambda o: edit_json(o / "preprocessor_config.json", _set("crop_size", {"height": 490, "width": 490})),
         'preprocessor_config.json has crop_size {"height": 490, "width": 490}, not in the source\'s form 336'),
        (lambda o: (o / "vocab.json").unlink(), "vocab.json is missing (the source has it)"),
        (lambda o: (o / "chat" / "template.jinja").unlink(), "chat/template.jinja is missing (the source has it)"),
        (lambda o: (o / "tokenizer.json").write_bytes(TOKENIZER.replace(b"BPE", b"WordPiece")),
         "tokenizer.json differs from the source's"),
        (lambda o: (o / "added_tokens.json").write_text("{}"), "added_tokens.json is not in the source"),
        (lambda o: (o / "pytorch_model.bin").write_bytes(b"old weights"),
         "pytorch_model.bin is not xcr's: xcr writes safetensors weights and one config"),
        (lambda o: (o / "preprocessor_config.json").unlink(), "preprocessor_config.json is missing (the source has it)"),
    ],
)  # fmt: skip
def test_processor_fields_and_carried_files(output: Any, mutate: Callable[[Path], None], said: str) -> None:
    src, out = output("clip")
    mutate(out)
    failed(out, src, "configs", said)


def test_carried_files_are_counted(made: Any) -> None:
    src, out = made("clip")
    detail = by_name(verify(out, src))["configs"].detail
    assert "preprocessor_config.json is the source's but for its sizes; 7 carried file(s) byte-identical" in detail


def test_a_processor_file_in_a_timm_output_is_not_the_sources(output: Any) -> None:
    src, out = output("timm")
    (out / "preprocessor_config.json").write_text(json.dumps({"crop_size": 448}))
    failed(out, src, "configs", "preprocessor_config.json is not in the source (timm outputs carry no processor file)")


def test_a_resize_before_a_crop_keeps_the_sources_ratio(tmp_path: Path) -> None:
    """facebook/dinov2-*: config.json says 518, the processor resizes to 256 and crops 224. At 448 the
    right processor resizes to 512 (the same share of the image), not 256·448/518 = 221, which pads
    two thirds of every image."""
    src = build_family(tmp_path / "src", "dinov2", image_size=518)
    edit_json(src / "preprocessor_config.json", _set("size", {"shortest_edge": 256}))
    edit_json(src / "preprocessor_config.json", _set("crop_size", {"height": 224, "width": 224}))
    resize(src, 448, tmp_path / "out")
    pre = tmp_path / "out" / "preprocessor_config.json"
    edit_json(pre, _set("size", {"shortest_edge": 512}))
    found = verify(tmp_path / "out", src)
    assert found.ok, found.checks
    edit_json(pre, _set("size", {"shortest_edge": 513}))  # within a pixel of rounding
    assert verify(tmp_path / "out", src).ok
    edit_json(pre, _set("size", {"shortest_edge": 221}))
    failed(tmp_path / "out", src, "configs",
           'preprocessor_config.json has size {"shortest_edge": 221}, smaller than its 448 px crop; the source '
           'resizes to {"shortest_edge": 256} for a 224×224 crop, which is 512 at 448 px')  # fmt: skip
    edit_json(pre, _set("size", {"shortest_edge": 600}))
    failed(tmp_path / "out", src, "configs", 'has size {"shortest_edge": 600}; the source resizes to')


# ---------------------------------------------------------------- the index's totals


def test_the_index_totals_are_the_outputs(output: Any) -> None:
    """transformers writes total_parameters (model.num_parameters()) beside total_size: xcr
    recomputes both for the output, and verify checks both."""
    from transformers import CLIPModel

    src, out = output("saved-sharded")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    source = json.loads((src / "model.safetensors.index.json").read_text())
    model = CLIPModel.from_pretrained(out)
    grown = (1226 - 577) * 32  # the table's new rows
    assert (
        index["metadata"]["total_parameters"]
        == model.num_parameters()
        == source["metadata"]["total_parameters"] + grown
    )
    assert index["metadata"]["total_size"] == source["metadata"]["total_size"] + 4 * grown
    edit_json(out / "model.safetensors.index.json", lambda i: i["metadata"].update(total_parameters=59985))
    failed(out, src, "files",
           f"model.safetensors.index.json has metadata.total_parameters 59985; the files hold "
           f"{model.num_parameters()} parameters")  # fmt: skip
    edit_json(
        out / "model.safetensors.index.json",
        lambda i: i["metadata"].update(total_parameters=model.num_parameters(), total_size=1),
    )
    failed(out, src, "files", "has metadata.total_size 1; the files hold")


# ---------------------------------------------------------------- the wrong source, the load report, the figures


def test_a_source_of_another_width_is_a_failed_check_not_a_crash(
    xcr: Any, made: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CLIP 64 wide named as the source of an output 32 wide. verify cannot tell a wrong --against
    from a damaged output (or a wrong recorded source), so it reports: the checks fail and say the
    shapes are another model's."""
    from tests import builders

    _, out = made("clip")
    monkeypatch.setitem(builders.VISION, "hidden_size", 64)
    wide = build(tmp_path / "wide")
    r = xcr("verify", out, "--against", wide, "--json")
    assert r.code == 1 and "Traceback" not in r.err
    assert one_error_line(r.err) == f"xcr: error: {out} failed 4 check(s): tensors, table, configs, load"
    checks = {c["check"]: c for c in json.loads(r.out)["checks"]}
    assert "is it the checkpoint this output was made from?" in checks["tensors"]["detail"]
    assert "[1226, 32] and the source's" in checks["table"]["detail"] and "[577, 64]" in checks["table"]["detail"]
    assert "another width (or form), so the output was not made from this source" in checks["table"]["detail"]


def test_a_failed_load_shows_the_keys(output: Any) -> None:
    """transformers refuses mismatched shapes with "look at the above report", a report it logged:
    the check says which keys, with their shapes."""
    src, out = output("clip")
    for block in ("vision_config", "vision_config_dict"):
        edit_json(out / "config.json", _set(f"{block}.image_size", 336))
    found = failed(out, src, "load",
                   "CLIPModel.from_pretrained fails: 1 mismatched key(s): vision_model.embeddings.position_embedding."
                   "weight (checkpoint [1226, 32], model [577, 32])")  # fmt: skip
    assert "report" not in by_name(found)["load"].detail


def test_a_cosine_is_never_shown_above_one(
    xcr: Any, made: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    src, out = made("clip-bfloat16")
    real = torch.nn.functional.cosine_similarity

    def rounded_up(*args: Any, **kwargs: Any) -> torch.Tensor:
        return real(*args, **kwargs) * 0 + (1 + 2**-20)  # 1.00000095: what float rounding can give

    monkeypatch.setattr(torch.nn.functional, "cosine_similarity", rounded_up)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(images / "red.png")
    r = xcr("verify", out, "--against", src, "--images", images, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    load = next(c for c in data["checks"] if c["check"] == "load")
    assert "cosine similarity 1.000000 " in load["detail"], load["detail"]
    assert data["drift"]["min"] == data["drift"]["mean"] == data["drift"]["worst"][0]["cosine"] == 1.0


# ---------------------------------------------------------------- a stranger's mutations


def _flip(out: Path, which: Callable[[str], bool]) -> None:
    path = next(p for p in sorted(out.glob("*.safetensors")))
    entry = next(t for t in read_header(path).tensors if which(t.name) and t.end - t.start > 8)
    with open(path, "r+b") as f:
        f.seek(entry.start + 5)
        byte = f.read(1)
        f.seek(entry.start + 5)
        f.write(bytes([byte[0] ^ 0x01]))


def _swap(out: Path) -> None:
    """Swap two tensors of the same shape (names kept: each name now holds the other's bytes)."""

    def swap(tensors: dict[str, torch.Tensor]) -> None:
        a, b = next(
            (a, b) for a in sorted(tensors) for b in sorted(tensors)
            if a < b and tensors[a].shape == tensors[b].shape and not torch.equal(tensors[a], tensors[b])
        )  # fmt: skip
        tensors[a], tensors[b] = tensors[b], tensors[a]

    edit_tensors(out, swap)


def _truncate(out: Path) -> None:
    shard = sorted(out.glob("model-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:-16])


TABLES = ("position_embedding.weight", "position_embeddings", "pos_embed", "positional_embedding")

PROBES = [
    ("clip-bin", "a flipped bit in a copied tensor", lambda o: _flip(o, lambda n: not n.endswith(TABLES)), "tensors"),
    ("timm", "a flipped bit in the table", lambda o: _flip(o, lambda n: n == "pos_embed"), "table"),
    ("dinov2", "two tensors of one shape swapped", _swap, "tensors"),
    ("timm", "two tensors of one shape swapped", _swap, "tensors"),
    ("clip-sharded", "a shard cut short", _truncate, "files"),
    ("clip-sharded", "the index deleted", lambda o: (o / "model.safetensors.index.json").unlink(), "files"),
    ("clip", "the record's resolution edited", lambda o: edit_record(o, "res: 490", "res: 336"), "configs"),
    ("clip", "the record's method edited", lambda o: edit_record(o, "mode: bicubic", "mode: bilinear"), "table"),
    ("clip", "the record made vision-only", lambda o: edit_record(o, "vision_only: false", "vision_only: true"),
     "tensors"),
    ("clip-vision-only", "the record given the projection",
     lambda o: edit_record(o, "with_projection: false", "with_projection: true"), "tensors"),
    ("clip", "the record given a cast", lambda o: edit_record(o, "dtype: keep", "dtype: float16"), "tensors"),
    ("siglip", "the processor's resample", lambda o: edit_json(o / "preprocessor_config.json", _set("resample", 0)),
     "configs"),
    ("timm", "the config's num_classes", lambda o: edit_json(o / "config.json", _set("num_classes", 11)), "configs"),
    ("clip", "the table stored in float16", lambda o: edit_tensors(o, lambda t: t.update({POS: t[POS].half()})),
     "table"),
    ("clip", "the header's format dropped", lambda o: edit_tensors(o, lambda t: None, metadata={}), "files"),
    ("clip", "the legacy vision_config_dict dropped", lambda o: edit_json(o / "config.json", lambda c: c.pop(
        "vision_config_dict")), "configs"),
    ("clip", "the model_type another family's", lambda o: edit_json(o / "config.json", _set("model_type", "siglip")),
     "configs"),
    ("open_clip", "a config.json of another layout added", lambda o: (o / "config.json").write_text(json.dumps(
        {"model_type": "clip", "vision_config": {"image_size": 224}})), "configs"),
    ("clip", "the tokenizer config edited", lambda o: edit_json(o / "tokenizer_config.json", _set("model_max_length",
     16)), "configs"),
]  # fmt: skip


@pytest.mark.parametrize(("layout", "what", "mutate", "check"), PROBES, ids=[f"{p[0]}: {p[1]}" for p in PROBES])
def test_a_strangers_mutation_fails_a_check(output: Any, layout: str, what: str, mutate: Callable[[Path], None],
                                            check: str) -> None:  # fmt: skip
    src, out = output(layout)
    mutate(out)
    found = verify(out, src)
    assert check in found.failed, found.checks


def test_an_output_without_its_record_is_checked_as_what_its_config_says(output: Any) -> None:
    """No model card: the defaults; a vision tower's config means a vision-only output."""
    src, out = output("clip-vision-only")
    (out / "README.md").unlink()
    found = verify(out, src)
    assert found.ok, found.checks
    assert "the source's 40 tensors (the vision tower's)" in by_name(found)["tensors"].detail
