"""Vision towers inside whole VLM checkpoints: the output loads with `from_pretrained` and runs at the new
size with its own processor's pixels and token count, its tower computes exactly what the source's computes
at that size with `interpolate_pos_encoding=True`, and every other tensor is the source's, byte for byte."""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from tests.vlm_builders import IMAGE_TOKEN, build_vlm, build_xcomposer, config_of, prompt

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

CASES = {  # case → (kind, llava-hf names, table name in the source)
    "llava-hf": ("llava", True, "vision_tower.vision_model.embeddings.position_embedding.weight"),
    "llava-5": ("llava", False, "vision_tower.embeddings.position_embedding.weight"),
    "llava-next": ("llava-next", False, "vision_tower.embeddings.position_embedding.weight"),
    "paligemma": ("paligemma", False, "vision_tower.embeddings.position_embedding.weight"),
    "internvl": ("internvl", False, "vision_tower.embeddings.position_embeddings"),
}


@contextlib.contextmanager
def edited(path: Path) -> Iterator[dict[str, Any]]:
    """A JSON file's content to change in place (a mutated output, a source missing a key)."""
    data = json.loads(path.read_text())
    yield data
    path.write_text(json.dumps(data))


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})
    return out


def fresh(model: Any) -> Any:
    """The model in fresh memory (BLAS takes other paths for memory-mapped weights) and eval mode."""
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.clone()
    return model.eval()


def load(folder: Path) -> Any:
    import transformers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fresh(transformers.AutoModelForImageTextToText.from_pretrained(folder))


def inputs(kind: str, folder: Path) -> dict[str, Any]:
    """What the output's own processor makes of a non-square image and a prompt."""
    import transformers

    image = Image.new("RGB", (90, 70), (120, 30, 200))
    if kind.startswith("llava"):
        processor = transformers.AutoProcessor.from_pretrained(folder)
        return dict(processor(images=image, text=prompt(processor), return_tensors="pt"))
    images = transformers.AutoImageProcessor.from_pretrained(folder)
    pixels = images(image, return_tensors="pt")["pixel_values"]
    stated = json.loads(
        (folder / ("preprocessor_config.json" if kind == "paligemma" else "processor_config.json")).read_text()
    )
    ids = [IMAGE_TOKEN] * stated["image_seq_length"] + [1, 2]  # as the processor expands the image token
    return {"pixel_values": pixels, "input_ids": torch.tensor([ids])}


def tower_features(model: Any, pixels: torch.Tensor, interpolate: bool) -> torch.Tensor:
    tower = model.model.vision_tower
    flat = pixels.flatten(0, 1) if pixels.dim() == 5 else pixels  # LLaVA-NeXT: tiles
    takes = "interpolate_pos_encoding" in inspect.signature(tower.forward).parameters
    kw = {"interpolate_pos_encoding": True} if interpolate and takes else {}
    with torch.no_grad():
        return tower(flat, **kw).last_hidden_state


@pytest.mark.parametrize("case", list(CASES))
def test_a_vlm_runs_at_the_new_size_with_its_own_processor(xcr: Any, tmp_path: Path, case: str) -> None:
    kind, hub_names, table = CASES[case]
    src = build_vlm(tmp_path / "src", kind, hub_names=hub_names)
    out = tmp_path / "out"
    r = xcr("resize", "--model", src, "--res", 56, "--out", out)
    assert r.code == 0, r.err
    before, after = tensors(src), tensors(out)
    assert set(before) == set(after) and table in after
    assert [k for k in before if not torch.equal(before[k], after[k])] == [table]
    model, source = load(out), load(src)
    given = inputs(kind, out)
    assert given["pixel_values"].shape[-2:] == (56, 56)
    images = int((given["input_ids"] == IMAGE_TOKEN).sum())
    with torch.no_grad():
        logits = model(**given).logits  # no "Image features and image tokens do not match"
    assert logits.shape[1] == given["input_ids"].shape[1]
    if kind in ("llava", "paligemma"):
        assert images == 16  # 4×4 cells, one token each
    if kind == "internvl":
        assert images == 4  # 4×4 cells folded 2×2 by the pixel shuffle
    got = tower_features(model, given["pixel_values"], False)
    want = tower_features(source, given["pixel_values"], True)
    assert torch.equal(got, want)
    check = xcr("verify", out, "--against", src, "--json")
    assert check.code == 0, check.out + check.err
    names = [c["check"] for c in json.loads(check.out)["checks"]]
    assert "tokens" in names and "load" in names


@pytest.mark.parametrize("case", ["llava-5", "llava-next", "paligemma", "internvl"])
def test_resize_model_on_a_vlm_runs_and_saves_what_xcr_resize_writes(xcr: Any, tmp_path: Path, case: str) -> None:
    """resize_model on a whole loaded VLM: the model runs with the processor `xcr resize` writes for that size
    (LLaVA-NeXT reads its anyres tiles from the config at run time), and save_pretrained states what xcr
    resize states: the VLM's own vision size, token counts and tiles, and the same table, bit for bit."""
    from xcomposer_resize import resize_model

    kind, hub_names, table = CASES[case]
    src = build_vlm(tmp_path / "src", kind, hub_names=hub_names)
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 56, "--out", out).code == 0
    model = resize_model(load(src), 56)
    given = inputs(kind, out)
    with torch.no_grad():
        logits = model(**given).logits
    assert logits.shape[1] == given["input_ids"].shape[1]
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    want, got = config_of(out), config_of(saved)
    for key in ("image_seq_length", "image_grid_pinpoints"):
        assert got.get(key) == want.get(key), key
    assert got["vision_config"]["image_size"] == want["vision_config"]["image_size"]
    assert got["text_config"].get("num_image_tokens") == want["text_config"].get("num_image_tokens")
    suffix = table.split("vision_tower.")[-1].removeprefix("vision_model.")
    mine = [t for name, t in tensors(saved).items() if name.endswith(suffix)]
    assert len(mine) == 1 and torch.equal(mine[0], tensors(out)[table])
    assert torch.equal(tower_features(load(saved), given["pixel_values"], False),
                       tower_features(load(out), given["pixel_values"], False))  # fmt: skip


def test_resize_model_refuses_a_size_the_vlm_cannot_take_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    from xcomposer_resize import XcrError, resize_model

    model = load(build_vlm(tmp_path / "src", "internvl"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = model.config.to_dict()
    with pytest.raises(XcrError, match=r"InternVL folds 2×2 cells into one token .* use 56 or 84"):
        resize_model(model, 70)  # 5×5 cells: the pixel shuffle cannot fold them
    assert model.config.to_dict() == config
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_a_source_without_processor_files_gets_a_note_saying_what_to_set(xcr: Any, tmp_path: Path) -> None:
    """Nothing then states the new size or token count for the processor the user brings: a note says
    both. XComposer2 makes its pixels in its own code: it lacks nothing, and gets no such note."""
    src = build_vlm(tmp_path / "llava", "llava")
    for name in ("preprocessor_config.json", "processor_config.json"):
        (src / name).unlink(missing_ok=True)
    r = xcr("resize", "--model", src, "--res", 56, "--res", 42, "--out", tmp_path / "{res}", "--json")
    assert r.code == 0, r.err
    notes = [n for n in json.loads(r.out)["notes"] if "no processor files" in n]
    assert notes == [f"{src} has no processor files (preprocessor_config.json or processor_config.json), so the "
                     "output has none either: a processor from elsewhere makes pixels of its own size; set it to "
                     "each output's: 56 px and 16 image tokens per image, 42 px and 9 image tokens per image"]  # fmt: skip
    with_them = xcr("resize", "--model", build_vlm(tmp_path / "full", "llava"), "--res", 56, "--out", tmp_path / "f",
                    "--json")  # fmt: skip
    assert not [n for n in json.loads(with_them.out)["notes"] if "processor" in n]

    xcomposer = build_xcomposer(tmp_path / "xc")
    assert not list(xcomposer.glob("*processor*"))
    r = xcr("resize", "--model", xcomposer, "--res", 98, "--out", tmp_path / "xc98", "--json")
    assert r.code == 0, r.err
    assert not [n for n in json.loads(r.out)["notes"] if "processor" in n]


def test_the_token_counts_and_tiles_follow_the_grid(xcr: Any, tmp_path: Path) -> None:
    src = build_vlm(tmp_path / "next", "llava-next")
    r = xcr("resize", "--model", src, "--res", 42, "--out", tmp_path / "out")
    assert r.code == 0, r.err
    config = config_of(tmp_path / "out")
    assert config["vision_config"]["image_size"] == 42
    assert config["image_grid_pinpoints"] == [[42, 84], [84, 42], [84, 84]]
    assert config["image_seq_length"] == 9
    processor = json.loads((tmp_path / "out" / "processor_config.json").read_text())["image_processor"]
    assert processor["image_grid_pinpoints"] == [[42, 84], [84, 42], [84, 84]]
    assert processor["crop_size"] == {"height": 42, "width": 42} and processor["size"] == {"shortest_edge": 42}

    pali = build_vlm(tmp_path / "pali", "paligemma")
    assert xcr("resize", "--model", pali, "--res", 70, "--out", tmp_path / "p70").code == 0
    config = config_of(tmp_path / "p70")
    assert config["vision_config"]["image_size"] == 70 and config["text_config"]["num_image_tokens"] == 25
    assert json.loads((tmp_path / "p70" / "preprocessor_config.json").read_text())["image_seq_length"] == 25


def test_verify_notices_a_token_count_that_does_not_follow(xcr: Any, tmp_path: Path) -> None:
    src = build_vlm(tmp_path / "src", "paligemma")
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 56, "--out", out).code == 0
    with edited(out / "preprocessor_config.json") as data:
        data["image_seq_length"] = 4
    r = xcr("verify", out, "--against", src)
    assert r.code == 1
    assert "preprocessor_config.json: image_seq_length is 4, not 16" in r.out


def test_vision_only_is_the_tower_in_its_bare_layout(xcr: Any, tmp_path: Path) -> None:
    import transformers

    src = build_vlm(tmp_path / "src", "llava", hub_names=True)
    out = tmp_path / "tower"
    r = xcr("resize", "--model", src, "--res", 56, "--out", out, "--vision-only")
    assert r.code == 0, r.err
    assert all(k.startswith("vision_model.") for k in tensors(out))
    # the tower alone: its image processor, none of the language model's files
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                     "preprocessor_config.json"]  # fmt: skip
    assert type(transformers.AutoProcessor.from_pretrained(out)).__name__.startswith("CLIPImageProcessor")
    assert config_of(out)["model_type"] == "clip_vision_model" and config_of(out)["image_size"] == 56
    tower, info = transformers.CLIPVisionModel.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    pixels = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    source = load(src)
    with torch.no_grad():
        got = fresh(tower)(pixels).last_hidden_state
    assert torch.equal(got, tower_features(source, pixels, True))
    check = xcr("verify", out, "--against", src, "--json")  # the tower's tensors under their bare names
    assert check.code == 0, check.out
    pali = build_vlm(tmp_path / "pali", "paligemma")
    r = xcr("resize", "--model", pali, "--res", 56, "--out", tmp_path / "pali-tower", "--vision-only", "--verify")
    assert r.code == 0, r.err


@pytest.mark.parametrize(
    ("model_type", "words"),
    [
        ("qwen2_vl", "Qwen2-VL has no absolute position table"),
        ("idefics3", "NaViT-style"),
        ("phi3_v", "tiles every image at 336 px"),
    ],  # fmt: skip
)
def test_vlms_with_nothing_to_convert_are_refused_with_the_reason(
    xcr: Any, tmp_path: Path, model_type: str, words: str
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    r = xcr("resize", "--model", folder, "--res", 448, "--out", tmp_path / "out")
    assert r.code == 2 and words in r.err
    assert not (tmp_path / "out").exists()


def test_internvl_refuses_a_grid_its_pixel_shuffle_cannot_fold(xcr: Any, tmp_path: Path) -> None:
    src = build_vlm(tmp_path / "src", "internvl")
    r = xcr("resize", "--model", src, "--res", 42, "--out", tmp_path / "out")
    assert r.code == 2
    assert "the grid must be a multiple of 2: 42 px gives 3×3 cells of 14 px; use 28 or 56" in r.err
    assert not (tmp_path / "out").exists()


def load_as_xcomposer(folder: Path) -> Any:
    """The output's tower as XComposer2 loads it: build_mlp.py builds CLIP at 336 px (here: 24×24 cells at tiny
    width), resize_pos resamples its fresh table to the file's `new_size`, then the checkpoint's tower weights
    load strictly; transformers 5 needs the size said in the tower's config too (XComposer never says it)."""
    from tests.test_xcomposer import xcomposer_resize_pos
    from tests.vlm_builders import xcomposer_tower

    code = (folder / "build_mlp.py").read_text()
    new_size = int(re.search(r"^ +new_size = ([0-9]+)$", code, re.M).group(1))  # type: ignore[union-attr]
    tower = xcomposer_tower(336)
    xcomposer_resize_pos(tower, new_size)
    state = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            state.update({k.removeprefix("vit.vision_tower.vision_model."): f.get_tensor(k) for k in f.keys()
                          if k.startswith("vit.vision_tower.")})  # fmt: skip
    tower.load_state_dict(state, strict=False)  # position_ids: a buffer transformers 5 does not save
    missing = set(tower.state_dict()) - set(state) - {"embeddings.position_ids"}
    assert not missing and not set(state) - set(tower.state_dict())
    tower.config.image_size = tower.embeddings.image_size = new_size * 14
    return fresh(tower)


def test_xcomposer2_runs_at_the_new_size_as_its_own_code_loads_it(xcr: Any, tmp_path: Path) -> None:
    from tests.vlm_builders import build_xcomposer, xcomposer_tower

    src = build_xcomposer(tmp_path / "internlm-xcomposer2-vl-7b", image_size=70)  # the "490": 5×5 cells
    out = tmp_path / "out"
    r = xcr("resize", "--model", src, "--res", 98, "--out", out, "--json")
    assert r.code == 0, r.err
    assert config_of(out)["img_size"] == 98
    settings = json.loads(r.out)["outputs"][0]["settings"]
    assert settings["config.json"] == {"img_size": [70, 98]}
    assert list(settings["build_mlp.py"].values()) == [["new_size = 5", "new_size = 7"]]
    code, before = (out / "build_mlp.py").read_text().splitlines(), (src / "build_mlp.py").read_text().splitlines()
    assert [(a, b) for a, b in zip(before, code, strict=True) if a != b] == [
        ("        new_size = 5", "        new_size = 7")
    ]
    assert (out / "modeling_internlm_xcomposer2.py").read_bytes() == (
        src / "modeling_internlm_xcomposer2.py"
    ).read_bytes()
    src_state: dict[str, torch.Tensor] = {}
    for path in src.glob("*.bin"):
        src_state.update(torch.load(path, weights_only=True))
    out_state = tensors(out)
    table = "vit.vision_tower.vision_model.embeddings.position_embedding.weight"
    assert set(src_state) == set(out_state)
    assert [k for k in src_state if not torch.equal(src_state[k], out_state[k])] == [table]
    tower = load_as_xcomposer(out)
    pixels = torch.randn(2, 3, 98, 98, generator=torch.Generator().manual_seed(0))
    source = xcomposer_tower(70)
    source.load_state_dict({k.removeprefix("vit.vision_tower.vision_model."): v for k, v in src_state.items()
                            if k.startswith("vit.vision_tower.")}, strict=False)  # fmt: skip
    with torch.no_grad():
        got = tower(pixels).last_hidden_state
        want = fresh(source)(pixels, interpolate_pos_encoding=True).last_hidden_state
    assert torch.equal(got, want)
    check = xcr("verify", out, "--against", src)
    assert check.code == 0, check.out + check.err
    assert "CLIPVisionModel (its vision tower alone)" in check.out


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("    def resize_pos(self):\n        print('Dummy Resized')\n", "its resize_pos is a no-op"),
        ("        new_size = 5\n        new_size = 5\n", "lines 1, 2 all set it; make that one line `new_size = 7`"),
        ("        new_size = (490 // 14)\n", "no line sets it; make that one line `new_size = 7`"),
        ("        new_size=5  # the grid\n        new_size = 5\n", "lines 1, 2 all set it"),
    ],  # fmt: skip
)
def test_xcomposer2_code_not_in_the_known_form_is_refused(xcr: Any, tmp_path: Path, code: str, words: str) -> None:
    from tests.vlm_builders import build_xcomposer

    src = build_xcomposer(tmp_path / "src", code=code)
    r = xcr("resize", "--model", src, "--res", 98, "--out", tmp_path / "out")
    assert r.code == 2 and "build_mlp.py" in r.err and words in r.err, r.err
    assert not (tmp_path / "out").exists()


def test_internvl_remote_code_layout_table_and_sizes(xcr: Any, tmp_path: Path) -> None:
    """The table InternVisionEmbeddings._get_pos_embed computes at run time for the new size (float32 bicubic,
    align_corners=False, class row apart), written here from its code, and both sizes its code reads."""
    from tests.vlm_builders import build_internvl_chat

    src = build_internvl_chat(tmp_path / "InternVL2_5-1B", image_size=56)
    out = tmp_path / "out"
    r = xcr("resize", "--model", src, "--res", 84, "--out", out)
    assert r.code == 0, r.err
    config = config_of(out)
    assert config["vision_config"]["image_size"] == 84 and config["force_image_size"] == 84
    name = "vision_model.embeddings.position_embedding"
    table = tensors(src)[name]
    grid = table[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2).float()
    resampled = torch.nn.functional.interpolate(grid, size=(6, 6), mode="bicubic", align_corners=False)
    want = torch.cat([table[:, :1], resampled.permute(0, 2, 3, 1).reshape(1, 36, -1)], dim=1)
    assert torch.equal(tensors(out)[name], want)
    assert xcr("verify", out, "--against", src).code == 0
    odd = xcr("resize", "--model", src, "--res", 70, "--out", tmp_path / "odd")
    assert odd.code == 2 and "use 56 or 84" in odd.err
    alone = xcr("resize", "--model", src, "--res", 84, "--out", tmp_path / "alone", "--vision-only")
    assert alone.code == 2 and "no transformers class to load it alone" in alone.err


def test_inspect_shows_the_nested_tower_and_its_token_count(xcr: Any, tmp_path: Path) -> None:
    src = build_vlm(tmp_path / "llava", "llava", hub_names=True, image_size=42)
    data = json.loads(xcr("inspect", src, "--json").out)
    assert data["family"] == "LLaVA" and data["tower"] == "CLIP at vision_tower.vision_model."
    assert data["image_tokens"] == 9 and data["table"]["shape"] == [10, 32]
    ivl = build_vlm(tmp_path / "internvl", "internvl", image_size=56)
    data = json.loads(xcr("inspect", ivl, "--json").out)
    assert data["tower"] == "InternViT at vision_tower." and data["image_tokens"] == 4
    assert "one per 2×2 cells" in data["image_tokens_rule"]
    shown = xcr("inspect", ivl).out
    assert "vision tower" in shown and "4 per image" in shown
    accepted = data["accepted_res"]  # every size it names converts: grids of whole 2×2 folds
    assert accepted["grid_multiple_of"] == 2 and accepted["min"] == 28 and accepted["max"] % 28 == 0
    assert "the grid a multiple of 2" in shown
    for res in (accepted["min"], 84):
        assert xcr("resize", "--model", ivl, "--res", res, "--out", tmp_path / f"ivl-{res}").code == 0
    assert xcr("resize", "--model", ivl, "--res", accepted["min"] - 14, "--out", tmp_path / "small").code == 2
    gemma = build_vlm(tmp_path / "gemma3", "gemma3", image_size=56)  # pooled to 2×2 tokens
    accepted = json.loads(xcr("inspect", gemma, "--json").out)["accepted_res"]
    assert accepted["grid_multiple_of"] == 2 and accepted["min"] == 28 and accepted["max"] % 28 == 0
    assert xcr("resize", "--model", gemma, "--res", accepted["min"], "--out", tmp_path / "gemma-min").code == 0


def test_a_sharded_vlm_with_a_dtype_lands_once_and_is_up_to_date_after(xcr: Any, tmp_path: Path) -> None:
    src = build_vlm(tmp_path / "src", "llava", shard=60_000)
    shards = sorted(p.name for p in src.glob("*.safetensors"))
    assert len(shards) > 1
    out = tmp_path / "out"
    r = xcr("resize", "--model", src, "--res", 56, "--out", out, "--dtype", "bfloat16", "--json")
    assert r.code == 0, r.err
    index = json.loads((out / "model.safetensors.index.json").read_text())
    after = tensors(out)
    assert set(index["weight_map"]) == set(after) and all(t.dtype == torch.bfloat16 for t in after.values())
    before = tensors(src)
    table = "vision_tower.embeddings.position_embedding.weight"
    assert all(torch.equal(before[k].to(torch.bfloat16), after[k]) for k in before if k != table)
    assert xcr("verify", out, "--against", src).code == 0
    again = xcr("resize", "--model", src, "--res", 56, "--out", out, "--dtype", "bfloat16", "--json")
    assert again.code == 0 and json.loads(again.out)["outputs"][0]["up_to_date"] is True


def test_gemma3_keeps_its_pooled_token_count_and_refuses_grids_it_cannot_pool(xcr: Any, tmp_path: Path) -> None:
    src = build_vlm(tmp_path / "src", "gemma3", image_size=56)
    bad = xcr("resize", "--model", src, "--res", 70, "--out", tmp_path / "bad")
    assert bad.code == 2 and "pools the tower's grid to 2×2 tokens" in bad.err and "such as 56 or 84" in bad.err
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 84, "--out", out).code == 0
    assert config_of(out)["mm_tokens_per_image"] == 4 and config_of(out)["vision_config"]["image_size"] == 84
    model, source = load(out), load(src)
    pixels = torch.randn(1, 3, 84, 84, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tower_features(model, pixels, False), tower_features(source, pixels, True))
    with torch.no_grad():
        features = model.get_image_features(pixel_values=pixels)
    pooled = features.pooler_output if hasattr(features, "pooler_output") else features
    assert pooled.shape[1] == 4  # the language model still gets its 4 tokens

    from xcomposer_resize import XcrError, resize_model

    with pytest.raises(XcrError, match="pools the tower's grid to 2×2 tokens"):
        resize_model(load(src), 70)
    in_process = resize_model(load(src), 84)
    assert in_process.config.vision_config.image_size == 84 and in_process.config.mm_tokens_per_image == 4
    assert torch.equal(tower_features(in_process, pixels, False), tower_features(model, pixels, False))
    for tokens in (5, -4):  # a count the projector cannot pool a square grid to
        with edited(src / "config.json") as data:
            data["mm_tokens_per_image"] = tokens
        odd = xcr("resize", "--model", src, "--res", 84, "--out", tmp_path / "odd")
        assert odd.code == 2 and f"mm_tokens_per_image {tokens}, not a square count" in odd.err, odd.err
        assert not (tmp_path / "odd").exists()


def test_a_sharded_vlm_from_the_hub_downloads_what_it_reads_and_inspect_says_so(
    xcr: Any, hub: Any, tmp_path: Path
) -> None:
    src = build_vlm(tmp_path / "src", "llava", shard=60_000)
    (src / "chat_template.jinja").write_text("{{ messages }}")
    rid = "llava-hf/tiny-llava-1.5-" + tmp_path.name[-6:].lower().replace("_", "-")
    sha = hub.add(rid, src)
    seen = json.loads(xcr("inspect", rid, "--json").out)
    assert seen["tower"] == "CLIP at vision_tower." and seen["sharded"] and not seen["weights_local"]
    wanted = set(seen["download"]["files"])
    assert {p.name for p in src.glob("*.safetensors")} <= wanted and "model.safetensors.index.json" in wanted
    out = tmp_path / "out"
    r = xcr("resize", "--model", rid, "--res", 56, "--out", out, "--json")
    assert r.code == 0, r.err
    assert set(hub.downloaded(rid)) == wanted and json.loads(r.out)["revision"] == sha
    assert (out / "chat_template.jinja").read_text() == "{{ messages }}"
    assert xcr("verify", out).code == 0  # against the source its card records: the Hub repo at that commit


def test_verify_notices_anyres_tiles_the_model_and_processor_disagree_on(xcr: Any, tmp_path: Path) -> None:
    src = build_vlm(tmp_path / "src", "llava-next")
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 56, "--out", out).code == 0
    with edited(out / "processor_config.json") as data:
        data["image_processor"]["image_grid_pinpoints"] = [[56, 112]]  # whole tiles, but not the model's
    r = xcr("verify", out, "--against", src)
    assert r.code == 1 and "processor_config.json: image_grid_pinpoints [[56, 112]], not the source's scaled" in r.out


def test_a_processor_that_leaves_its_sizes_to_its_class_defaults(xcr: Any, tmp_path: Path) -> None:
    """LLaVA-NeXT's image processor without image_grid_pinpoints (its class default: 336-px tiles) gets the
    model's, scaled; an image processor that states no size at all is refused (xcr cannot change a default)."""
    src = build_vlm(tmp_path / "next", "llava-next")
    with edited(src / "processor_config.json") as data:
        del data["image_processor"]["image_grid_pinpoints"]
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 56, "--out", out).code == 0
    stated = json.loads((out / "processor_config.json").read_text())["image_processor"]["image_grid_pinpoints"]
    assert stated == config_of(out)["image_grid_pinpoints"] == [[56, 112], [112, 56], [112, 112]]
    assert xcr("verify", out, "--against", src).code == 0
    given = inputs("llava-next", out)
    with torch.no_grad():
        load(out)(**given)  # the processor's tiles are the model's: no "image tokens do not match"

    bare = build_vlm(tmp_path / "llava", "llava")
    with edited(bare / "processor_config.json") as data:
        del data["image_processor"]["size"], data["image_processor"]["crop_size"]
    r = xcr("resize", "--model", bare, "--res", 56, "--out", tmp_path / "no")
    assert r.code == 2 and "states no size, so its class's default applies" in r.err
    assert not (tmp_path / "no").exists()

    for drop, words in (("crop_size", None), ("size", "states image_processor.crop_size but no size")):
        one = build_vlm(tmp_path / f"no-{drop}", "llava")
        with edited(one / "processor_config.json") as data:
            del data["image_processor"][drop]
        r = xcr("resize", "--model", one, "--res", 56, "--out", tmp_path / f"out-{drop}")
        if words:  # the class's resize before the crop would pad every image: refused
            assert r.code == 2 and words in r.err
        else:  # the crop the model sees is stated, as the class would crop at its default
            assert r.code == 0, r.err
            got = json.loads((tmp_path / f"out-{drop}" / "processor_config.json").read_text())["image_processor"]
            assert got["crop_size"] == {"height": 56, "width": 56}
            assert inputs("llava", tmp_path / f"out-{drop}")["pixel_values"].shape[-2:] == (56, 56)


def test_internvl_chat_with_a_preprocessor_config_verifies(xcr: Any, tmp_path: Path) -> None:
    from tests.vlm_builders import build_internvl_chat

    src = build_internvl_chat(tmp_path / "src", image_size=56)
    (src / "preprocessor_config.json").write_text(json.dumps(
        {"crop_size": 56, "size": 56, "do_center_crop": True, "feature_extractor_type": "CLIPFeatureExtractor"}))  # fmt: skip
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 112, "--out", out).code == 0
    assert json.loads((out / "preprocessor_config.json").read_text())["crop_size"] == 112
    r = xcr("verify", out, "--against", src)
    assert r.code == 0, r.out


def test_a_vision_only_tower_says_and_records_its_own_names(xcr: Any, tmp_path: Path) -> None:
    src = build_vlm(tmp_path / "src", "llava")
    out = tmp_path / "tower"
    r = xcr("resize", "--model", src, "--res", 56, "--out", out, "--vision-only", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["tensors_rewritten"] == ["vision_model.embeddings.position_embedding.weight"]
    again = xcr("resize", "--model", src, "--res", 56, "--out", out, "--vision-only", "--json")
    assert json.loads(again.out)["outputs"][0]["up_to_date"] is True
