"""Non-square sizes (`--res 448x672`, height x width) for the families whose configs can state them:
HF ViT (image_size [H, W], processor {height, width}), timm (input_size [3, H, W] and model_args.img_size
[H, W]) and open_clip (vision_cfg.image_size [H, W]); a refusal naming why for the others.

transformers is the oracle for ViT: the output's forward at 448×672 equals the source's forward at
448×672 with interpolate_pos_encoding=True, which resamples the square table to (28, 42) with
size=, exactly in float32. timm and open_clip: the table equals F.interpolate to (H/p, W/p) with their
documented semantics, and every config key says the new size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tests.family_builders import build_family, build_open_clip, build_timm
from tests.test_cli import one_error_line
from tests.test_families import features, fresh, table_of
from xcomposer_resize import resize, verify
from xcomposer_resize.size import Size


def resampled(table: torch.Tensor, prefix: int, old: tuple[int, int], new: tuple[int, int],
              antialias: bool) -> torch.Tensor:  # fmt: skip
    """F.interpolate with size=new, bicubic, align_corners False, float32; prefix rows kept."""
    flat = table.reshape(-1, table.shape[-1]).float()
    cells = flat[prefix:].reshape(1, *old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(cells, size=new, mode="bicubic", align_corners=False, antialias=antialias)
    out = torch.cat([flat[:prefix], grid.permute(0, 2, 3, 1).reshape(new[0] * new[1], -1)])
    return out.reshape(*table.shape[:-2], -1, table.shape[-1]).to(table.dtype)


def test_vit_at_448x672_equals_transformers_own_interpolation(xcr: Any, tmp_path: Path) -> None:
    import transformers
    from PIL import Image

    src = build_family(tmp_path / "src", "vit")  # 224 px, 16-px patches: 14×14
    out = tmp_path / "out"
    r = xcr("resize", "--model", src, "--res", "448x672", "--out", out, "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)["outputs"][0]
    assert report["res"] == [448, 672] and report["grid"] == [28, 42]
    config = json.loads((out / "config.json").read_text())
    assert config["image_size"] == [448, 672]

    model, info = transformers.ViTForImageClassification.from_pretrained(out, output_loading_info=True)
    assert not any(v for k, v in info.items() if k != "error_msgs"), info
    processor = transformers.AutoImageProcessor.from_pretrained(out)
    pixels = processor(images=Image.new("RGB", (640, 480), (90, 120, 200)), return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape[-2:]) == (448, 672), "the output's processor makes height 448, width 672"

    reference = fresh(transformers.ViTForImageClassification.from_pretrained(src))
    model = fresh(model)
    x = torch.randn(2, 3, 448, 672, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = features(model.vit, x, interpolate=False), features(reference.vit, x, interpolate=True)
    assert torch.equal(got, want), (got - want).abs().max()

    found = verify(out, src)
    assert found.ok, found.checks
    assert found.res == Size(448, 672)
    load = next(c for c in found.checks if c.check == "load")
    assert load.ok and "448×672 equals the source's, bit for bit" in load.detail
    card = (out / "README.md").read_text()
    assert "at 448×672 px" in card and "14×14 → 28×42" in card and "- 448x672px" in card


@pytest.mark.parametrize("prefix", ["cls", "cls+reg4"])
def test_timm_to_448x672_and_back_to_a_square(xcr: Any, tmp_path: Path, prefix: str) -> None:
    from tests.family_builders import TIMM_PREFIX

    src = build_timm(tmp_path / "src", prefix=prefix, model_args=True)
    wide = tmp_path / "wide"
    r = xcr("resize", "--model", src, "--res", "448x672", "--out", wide)
    assert r.code == 0, r.err
    assert "448×672 px, 28×42 grid" in r.out
    rows = TIMM_PREFIX[prefix]
    _, source_table = table_of(src)
    _, got = table_of(wide)
    assert torch.equal(got, resampled(source_table, rows, (14, 14), (28, 42), antialias=True))
    config = json.loads((wide / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 448, 672]
    assert config["model_args"]["img_size"] == [448, 672], "timm builds the model from it"
    assert verify(wide, src).ok

    # a non-square source converts too: from its 28×42 grid back to a square one
    back = tmp_path / "back"
    r = xcr("resize", "--model", wide, "--res", 224, "--out", back)
    assert r.code == 0, r.err
    _, again = table_of(back)
    assert torch.equal(again, resampled(got, rows, (28, 42), (14, 14), antialias=True))
    assert json.loads((back / "config.json").read_text())["model_args"]["img_size"] == 224

    r = xcr("inspect", wide, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["image_size"] == [448, 672] and data["grid"] == [28, 42] and data["prefix_tokens"] == rows
    assert data["accepted_res"]["non_square"] is True


def test_open_clip_to_448x672(tmp_path: Path) -> None:
    src = build_open_clip(tmp_path / "src")
    result = resize(src, "448x672", tmp_path / "out")
    assert result.outputs[0].grid == (28, 42)
    _, got = table_of(tmp_path / "out")
    assert torch.equal(got, resampled(table_of(src)[1], 1, (14, 14), (28, 42), antialias=True))
    config = json.loads((tmp_path / "out" / "open_clip_config.json").read_text())
    assert config["model_cfg"]["vision_cfg"]["image_size"] == [448, 672]
    assert verify(tmp_path / "out", src).ok


@pytest.mark.parametrize(
    ("family", "why"),
    [
        ("siglip", "a SigLIP checkpoint cannot be: transformers' SigLIP config states one image_size"),
        ("dinov2", "a DINOv2 checkpoint cannot be: transformers' DINOv2 resamples its table on every forward"),
        ("dinov2-registers", "a DINOv2 with registers checkpoint cannot be"),
    ],
)
def test_families_that_hold_one_size_refuse_with_the_reason(xcr: Any, tmp_path: Path, family: str, why: str) -> None:
    src = build_family(tmp_path / "src", family)
    r = xcr("resize", "--model", src, "--res", "448x672", "--out", tmp_path / "out")
    assert r.code == 2
    line = one_error_line(r.err)
    assert line.startswith("xcr: error: --res 448x672 is not square, and ") and why in line
    assert "give one size such as 448" in line
    assert not (tmp_path / "out").exists()


def test_a_processor_that_states_one_number_is_refused_before_any_work(xcr: Any, tmp_path: Path) -> None:
    src = build_family(tmp_path / "src", "vit")
    path = src / "preprocessor_config.json"
    data = json.loads(path.read_text())
    data["size"] = {"shortest_edge": 224}
    path.write_text(json.dumps(data))
    r = xcr("resize", "--model", src, "--res", "448x672", "--out", tmp_path / "out")
    assert r.code == 2
    assert 'preprocessor_config.json has size {"shortest_edge": 224}, one number, which cannot state 448×672 px' in (
        one_error_line(r.err)
    )
    assert not (tmp_path / "out").exists()
    assert xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out").code == 0, "square is fine"


def test_a_size_that_is_not_a_multiple_says_which_pixels_are_left_out(xcr: Any, tmp_path: Path) -> None:
    src = build_timm(tmp_path / "src")
    r = xcr("resize", "--model", src, "--res", "450x680", "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert "--res 450x680 is not a multiple of the patch size 16: the 28×42 grid covers 448×672 px" in r.err
    assert (
        "the last 8 px on the right and 2 px at the bottom" in r.err and "448x672 or 464x688 would fit exactly" in r.err
    )
    assert json.loads((tmp_path / "out" / "config.json").read_text())["pretrained_cfg"]["input_size"] == [3, 450, 680]


def test_several_sizes_name_their_folders_and_rerun_up_to_date(xcr: Any, tmp_path: Path) -> None:
    src = build_timm(tmp_path / "src")
    args = ["resize", "--model", src, "--res", 448, "--res", "448x672", "--res", "672x448"]
    r = xcr(*args, "--out", tmp_path / "vit-{res}", "--json")
    assert r.code == 0, r.err
    outputs = json.loads(r.out)["outputs"]
    assert [Path(o["path"]).name for o in outputs] == ["vit-448", "vit-448x672", "vit-672x448"]
    assert [o["grid"] for o in outputs] == [[28, 28], [28, 42], [42, 28]]
    tall = json.loads((tmp_path / "vit-672x448" / "config.json").read_text())
    assert tall["pretrained_cfg"]["input_size"] == [3, 672, 448]
    r = xcr(*args, "--out", tmp_path / "vit-{res}", "--json")
    assert r.code == 0, r.err
    assert all(o["up_to_date"] for o in json.loads(r.out)["outputs"])
    r = xcr("resize", "--model", src, "--res", "672x448", "--out", tmp_path / "vit-448x672")
    assert r.code == 2 and "is for 448×672 px, not 672×448 px" in one_error_line(r.err)


def test_the_default_name_and_the_python_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default output lands in the current folder
    src = build_timm(tmp_path / "vit_tiny_patch16_224")
    result = resize(src, Size(448, 672))
    assert Path(result.outputs[0].path).name == "vit_tiny_patch16_448x672"
    assert result.to_json()["outputs"][0]["res"] == [448, 672]
    result = resize(src, ["448X672"], tmp_path / "again")
    assert result.outputs[0].res == Size(448, 672)


def test_the_mosaic_of_a_non_square_grid(tmp_path: Path) -> None:
    from xcomposer_resize.commands.plot import mosaic

    table = torch.randn(1 + 2 * 3, 8)
    image = mosaic(table, 1, (2, 3))
    assert image.shape == (2 * 3 - 1, 3 * 4 - 1), "2×3 tiles of 2×3 cells, a blank line between tiles"
    unit = F.normalize(table[1:], dim=1)
    assert torch.allclose(image[:2, 4:7], (unit[1] @ unit.T).reshape(2, 3)), "tile (0, 1) is cell (0, 1)'s"


def test_a_non_square_vit_source_converts_and_verifies_without_a_forward_compare(xcr: Any, tmp_path: Path) -> None:
    """transformers resamples a table as a square grid at run time, so a non-square source has no
    run-time oracle: the table check proves the table, and the load check says why it compares no forward."""
    src = build_family(tmp_path / "src", "vit")
    wide = tmp_path / "wide"
    assert xcr("resize", "--model", src, "--res", "448x672", "--out", wide).code == 0
    back = tmp_path / "back"
    r = xcr("resize", "--model", wide, "--res", "336x224", "--out", back, "--verify")
    assert r.code == 0, r.err
    said = " ".join(r.out.split())  # rich wraps long lines
    assert "the forward pass is not compared: transformers reads a table it resamples as a square grid" in said
    _, table = table_of(back)
    assert torch.equal(table, resampled(table_of(wide)[1], 1, (28, 42), (21, 14), antialias=False))
    card = (back / "README.md").read_text()
    assert "The source's grid is not square" in card and "F.interpolate(size=(21, 14))" in card


def test_a_masked_image_modeling_vit_stays_square(xcr: Any, tmp_path: Path) -> None:
    import transformers

    src = tmp_path / "src"
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32)  # fmt: skip
    transformers.ViTForMaskedImageModeling(config).save_pretrained(src)
    r = xcr("resize", "--model", src, "--res", "32x48", "--out", tmp_path / "out")
    assert r.code == 2
    assert "transformers' ViTForMaskedImageModeling folds its output back into a square grid" in one_error_line(r.err)
    assert not (tmp_path / "out").exists()
    assert xcr("resize", "--model", src, "--res", 48, "--out", tmp_path / "out").code == 0


@pytest.mark.parametrize(
    ("res", "message"),
    [
        ((448, 672), "res=(448, 672) is ambiguous: give a list [448, 672] for two sizes, or '448x672'"),
        (Size("448", "672"), "must hold whole numbers of pixels"),  # type: ignore[arg-type]
        (Size(True, 672), "must hold whole numbers of pixels"),
        ({448: 1}, "res must be a size or a list of them, not dict"),
        ("٤٤٨x672", "is not a size such as 490 or 448x672"),
    ],
)
def test_python_sizes_that_are_refused(tmp_path: Path, res: Any, message: str) -> None:
    from xcomposer_resize import XcrError

    src = build_timm(tmp_path / "src")
    with pytest.raises(XcrError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        resize(src, res, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [o.res for o in resize(src, [448, 672], tmp_path / "out-{res}").outputs] == [Size(448, 448), Size(672, 672)]


def test_a_square_source_named_hxw_keeps_its_naming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = build_timm(tmp_path / "vit-224x224")
    assert Path(resize(src, "448x672").outputs[0].path).name == "vit-448x672"
    assert Path(resize(src, 336).outputs[0].path).name == "vit-336"


def test_verify_without_processor_files(tmp_path: Path) -> None:
    src = build_family(tmp_path / "src", "vit")
    (src / "preprocessor_config.json").unlink()
    resize(src, "448x672", tmp_path / "out")
    found = verify(tmp_path / "out", src)
    assert found.ok, found.checks
    load = next(c for c in found.checks if c.check == "load")
    assert "(it has no image processor)" in load.detail and "bit for bit" in load.detail
