"""End to end: convert tiny real-layout checkpoints and check them with transformers as the oracle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from tests.conftest import snapshot
from xcomposer_resize import resize
from xcomposer_resize.checkpoint.weights import open_checkpoint

POS = "vision_model.embeddings.position_embedding.weight"
IDS = "vision_model.embeddings.position_ids"


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder, through the safetensors library or torch.load."""
    out: dict[str, torch.Tensor] = {}
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    for f in files:
        if f.suffix == ".safetensors":
            with safe_open(str(f), framework="pt") as st:
                out.update({k: st.get_tensor(k) for k in st.keys()})
        else:
            out.update(torch.load(f, weights_only=True))
    return out


def load(folder: Path, cls_name: str = "CLIPModel") -> Any:
    import transformers

    model, info = getattr(transformers, cls_name).from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == set() or not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    # Weights memory-mapped from a file sit at whatever alignment the file gives them, and BLAS
    # picks other kernels (last-bit differences) for unaligned data: give both sides fresh memory
    # so that outputs compare the math, not the allocation.
    with torch.no_grad():
        for p in list(model.parameters()) + list(model.buffers()):
            p.data = p.data.clone()
    return model.eval()


def image_features(model: Any, pixels: torch.Tensor, **kw: Any) -> torch.Tensor:
    with torch.no_grad():
        if hasattr(model, "get_image_features"):
            out = model.get_image_features(pixel_values=pixels, **kw)
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        got = model(pixel_values=pixels, **kw)
        return got.image_embeds if hasattr(got, "image_embeds") else got.last_hidden_state


@pytest.mark.parametrize("fmt", ["safetensors", "bin", "sharded", "bin-sharded"])
@pytest.mark.parametrize("res", [224, 490])
def test_full_clip_equals_transformers_interpolation(make_ckpt: Any, tmp_path: Path, fmt: str, res: int) -> None:
    src = make_ckpt(fmt=fmt)
    before = snapshot(src)
    result = resize(src, res, tmp_path / "out")
    out = Path(result.outputs[0].path)
    g = res // 14
    assert result.outputs[0].grid == (g, g)
    assert result.tensors_rewritten == [POS, IDS]

    pixels = torch.randn(2, 3, res, res)
    expected = image_features(load(src), pixels, interpolate_pos_encoding=True)
    got = image_features(load(out), pixels)
    assert torch.equal(got, expected)
    assert snapshot(src) == before, "the source must never be modified"
    assert not [p for p in tmp_path.iterdir() if ".xcr-" in p.name], "no temporary litter"


@pytest.mark.parametrize(
    ("kind", "naming", "cls_name"),
    [
        ("vision", "v4", "CLIPVisionModel"),
        ("vision", "v5", "CLIPVisionModel"),
        ("vision-proj", "v4", "CLIPVisionModelWithProjection"),
        ("vision-proj", "v5", "CLIPVisionModelWithProjection"),
    ],
)
def test_vision_only_checkpoints_in_both_namings(
    make_ckpt: Any, tmp_path: Path, kind: str, naming: str, cls_name: str
) -> None:
    src = make_ckpt(kind=kind, naming=naming)
    out = tmp_path / "out"
    result = resize(src, 490, out)
    prefix = "vision_model." if naming == "v4" else ""
    assert result.tensors_rewritten == [
        prefix + "embeddings.position_embedding.weight",
        prefix + "embeddings.position_ids",
    ]
    assert set(tensors(out)) == set(tensors(src)), "the naming found is the naming kept"
    config = json.loads((out / "config.json").read_text())
    assert config["image_size"] == 490 and config["model_type"] == "clip_vision_model"
    import transformers

    _, info = getattr(transformers, cls_name).from_pretrained(src, output_loading_info=True)
    if info["missing_keys"]:  # older transformers 5.x load bare keys only into CLIPVisionModel
        pytest.skip(f"transformers {transformers.__version__} cannot load this naming into {cls_name}, source included")
    pixels = torch.randn(1, 3, 490, 490)
    expected = image_features(load(src, cls_name), pixels, interpolate_pos_encoding=True)
    assert torch.equal(image_features(load(out, cls_name), pixels), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_resampled_in_float32_and_cast_back(
    make_ckpt: Any, tmp_path: Path, dtype: torch.dtype
) -> None:
    from tests.test_interpolate import transformers_table

    src = make_ckpt(dtype=dtype)
    resize(src, 490, tmp_path / "out")
    old, new = tensors(src), tensors(tmp_path / "out")
    assert new[POS].dtype == dtype
    assert torch.equal(new[POS], transformers_table(old[POS].float(), 35).to(dtype))
    for name in old:
        if name not in (POS, IDS):
            assert new[name].dtype == old[name].dtype and torch.equal(new[name], old[name]), name


def test_every_other_tensor_is_byte_identical(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    resize(src, 490, tmp_path / "out")
    old, new = tensors(src), tensors(tmp_path / "out")
    assert set(old) == set(new)
    for name in old:
        if name in (POS, IDS):
            continue
        assert new[name].dtype == old[name].dtype, name
        assert new[name].shape == old[name].shape, name
        assert new[name].reshape(-1).view(torch.uint8).equal(old[name].reshape(-1).view(torch.uint8)), name
    assert torch.equal(new["text_model.embeddings.position_ids"], old["text_model.embeddings.position_ids"])
    assert torch.equal(
        new["text_model.embeddings.position_embedding.weight"], old["text_model.embeddings.position_embedding.weight"]
    )
    assert torch.equal(new[POS][0], old[POS][0]), "class row copied"
    assert new[IDS].dtype == torch.int64 and new[IDS].shape == (1, 1 + 35 * 35)
    assert torch.equal(new[IDS], torch.arange(1 + 35 * 35).unsqueeze(0))


def test_without_position_ids_none_are_added(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(position_ids=False)
    result = resize(src, 224, tmp_path / "out")
    assert result.tensors_rewritten == [POS]
    assert IDS not in tensors(tmp_path / "out")


def test_configs_state_the_new_resolution(make_ckpt: Any, tmp_path: Path) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor

    src = make_ckpt()
    out = tmp_path / "out"
    resize(src, 490, out)
    old = json.loads((src / "config.json").read_text())
    new = json.loads((out / "config.json").read_text())
    assert new["vision_config"]["image_size"] == 490
    assert new["vision_config_dict"]["image_size"] == 490
    old["vision_config"]["image_size"] = old["vision_config_dict"]["image_size"] = 490
    assert new == old, "nothing else in config.json changes"
    assert list(new) == list(old), "key order kept"
    assert CLIPConfig.from_pretrained(out).vision_config.image_size == 490

    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["size"] == 490 and pre["crop_size"] == 490
    pixels = CLIPImageProcessor.from_pretrained(out)(
        images=torch.randint(0, 255, (3, 600, 800), dtype=torch.uint8), return_tensors="pt"
    )
    assert tuple(pixels["pixel_values"].shape) == (1, 3, 490, 490)


@pytest.mark.parametrize(
    ("size", "crop", "want_size", "want_crop"),
    [
        ({"shortest_edge": 336}, {"height": 336, "width": 336}, {"shortest_edge": 224}, {"height": 224, "width": 224}),
        (336, {"height": 336, "width": 336}, 224, {"height": 224, "width": 224}),
    ],
)
def test_preprocessor_sizes_keep_their_form(
    make_ckpt: Any, tmp_path: Path, size: Any, crop: Any, want_size: Any, want_crop: Any
) -> None:
    from tests.builders import preprocessor_config

    src = make_ckpt(preprocessor=preprocessor_config(size, crop))
    resize(src, 224, tmp_path / "out")
    pre = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert pre["size"] == want_size and pre["crop_size"] == want_crop


def test_files_carried_over_and_other_weight_formats_not(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="bin", extra_files={"tf_model.h5": b"HDF", "flax_model.msgpack": b"x", "notes.txt": b"hi"})
    out = tmp_path / "out"
    resize(src, 490, out)
    names = {p.name for p in out.iterdir()}
    assert names == {
        ".gitattributes", "README.md", "config.json", "preprocessor_config.json", "model.safetensors",
        "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "notes.txt",
    }  # fmt: skip
    for name in (
        ".gitattributes",
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "notes.txt",
    ):
        assert (out / name).read_bytes() == (src / name).read_bytes(), name


def test_model_card_and_metadata(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt("clip-vit-tiny-patch14-336")
    out = tmp_path / "out"
    resize(src, 490, out)
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: transformers" in card and "- xcomposer-resize" in card
    assert "336 px → 490 px" in card and "24×24 → 35×35" in card and "bicubic" in card
    assert "clip-vit-tiny-patch14-336" in card and str(tmp_path) not in card, "no local paths in the card"
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert f.metadata() == {"format": "pt"}


def test_two_runs_give_byte_identical_files(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="bin")
    resize(src, 490, tmp_path / "a")
    resize(src, 490, tmp_path / "b")
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def test_sharded_stays_sharded_with_a_correct_index(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="sharded")
    out = tmp_path / "out"
    resize(src, 490, out)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert shards == sorted(p.name for p in src.glob("*.safetensors"))
    assert sorted(set(index["weight_map"].values())) == shards
    total = sum(t.numel() * t.element_size() for t in tensors(out).values())
    assert index["metadata"]["total_size"] == total


def test_sharded_bin_becomes_sharded_safetensors(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="bin-sharded")
    out = tmp_path / "out"
    resize(src, 224, out)
    assert sorted(p.name for p in out.glob("*.safetensors")) == [
        f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)
    ]
    assert not list(out.glob("*.bin")) and not (out / "pytorch_model.bin.index.json").exists()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tensors(src))


def test_legacy_non_zip_bin(make_ckpt: Any, tmp_path: Path) -> None:
    from tests.test_interpolate import transformers_table

    src = make_ckpt(fmt="bin")
    sd = torch.load(src / "pytorch_model.bin", weights_only=True)
    torch.save(sd, src / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    resize(src, 490, tmp_path / "out")
    new = tensors(tmp_path / "out")
    assert torch.equal(new[POS], transformers_table(sd[POS], 35))
    assert all(torch.equal(new[k], v) for k, v in sd.items() if k not in (POS, IDS))
    load(tmp_path / "out")


def test_bin_tensors_are_copied_from_the_file_not_through_memory(make_ckpt: Any) -> None:
    from xcomposer_resize.checkpoint.safetensors import FileRange

    ckpt = open_checkpoint(make_ckpt(fmt="bin"))
    assert all(isinstance(t.data, FileRange) for t in ckpt.shards[0].tensors)


def test_same_grid_still_writes_an_unchanged_checkpoint(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="bin")
    notes: list[str] = []
    result = resize(src, 336, tmp_path / "out", on_note=notes.append)
    assert result.tensors_rewritten == []
    assert notes and "already 24×24" in notes[0]
    old, new = tensors(src), tensors(tmp_path / "out")
    assert all(torch.equal(old[k], new[k]) for k in old)


def test_several_resolutions_from_one_call(make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_ckpt("clip-vit-tiny-patch14-336")
    monkeypatch.chdir(tmp_path)
    result = resize(src, [224, 490])
    assert [Path(o.path).name for o in result.outputs] == ["clip-vit-tiny-patch14-224", "clip-vit-tiny-patch14-490"]
    for o in result.outputs:
        assert json.loads((Path(o.path) / "config.json").read_text())["vision_config"]["image_size"] == o.res.height


@pytest.mark.parametrize(
    ("mode", "antialias"), [("bilinear", False), ("bicubic", True), ("nearest", False), ("area", False)]
)
def test_other_modes_are_recorded(make_ckpt: Any, tmp_path: Path, mode: str, antialias: bool) -> None:
    from tests.test_interpolate import reference

    src = make_ckpt()
    resize(src, 490, tmp_path / "out", mode=mode, antialias=antialias)
    assert torch.equal(tensors(tmp_path / "out")[POS], reference(tensors(src)[POS], 35, mode, antialias))
    card = (tmp_path / "out" / "README.md").read_text()
    method = next(line for line in card.splitlines() if line.startswith("| method |"))
    assert mode in method and ("antialias" in method) == antialias
    default = make_ckpt()
    resize(default, 490, tmp_path / "default")
    assert not torch.equal(tensors(tmp_path / "out")[POS], tensors(tmp_path / "default")[POS])


@pytest.mark.gpu
def test_cuda_device_gives_a_loadable_checkpoint(make_ckpt: Any, tmp_path: Path) -> None:
    from tests.test_interpolate import within_one_ulp

    src = make_ckpt()
    resize(src, 490, tmp_path / "gpu", device="cuda")
    resize(src, 490, tmp_path / "cpu", device="cpu")
    gpu, cpu = tensors(tmp_path / "gpu"), tensors(tmp_path / "cpu")
    assert within_one_ulp(gpu[POS], cpu[POS]), (gpu[POS] - cpu[POS]).abs().max()
    assert all(torch.equal(gpu[k], cpu[k]) for k in cpu if k != POS), "only the table may differ"
    load(tmp_path / "gpu")
