"""The other ViT families: SigLIP, DINOv2, DINOv2 with registers, ViT, with transformers as the oracle.

For each family the output loads with no missing, unexpected or mismatched keys, its image
processor makes the new size, and its forward pass at the new size equals the source's forward at
that size with the family's own run-time interpolation (`interpolate_pos_encoding=True`; DINOv2
interpolates on every forward), bit for bit in float32.
"""

from __future__ import annotations

import inspect as pyinspect
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tests.family_builders import FAMILIES, SIZES, build_family
from tests.hubserver import HubServer
from tests.test_cli import one_error_line
from xcomposer_resize import resize, verify
from xcomposer_resize.families import NAMES

# family → (target resolution, its grid, the transformers class that loads it)
TARGETS = {
    "siglip": (768, 54, "SiglipModel"),  # so400m 384 → 768: 27×27 → 54×54, neither a multiple of 14
    "siglip-vision": (448, 32, "SiglipVisionModel"),
    "dinov2": (448, 32, "Dinov2Model"),
    "dinov2-registers": (448, 32, "Dinov2WithRegistersModel"),
    "vit": (384, 24, "ViTForImageClassification"),
}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder, read by the reference readers, never by xcr's own: the
    safetensors library for `*.safetensors` (model-*, open_clip_model), else torch.load(weights_only=True)
    for `*.bin` (pytorch_model-*, open_clip_pytorch_model)."""
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin")):
        found = load_file(str(f)) if f.suffix == ".safetensors" else torch.load(f, weights_only=True)
        assert not set(found) & set(out), f"a tensor stored twice in {folder}"
        out.update(found)
    assert out, f"no weights in {folder}"
    return out


def table_of(folder: Path) -> tuple[str, torch.Tensor]:
    """The vision position table of a checkpoint folder: its name and values (see `weights`)."""
    found = weights(folder)
    name = next(
        n
        for n in found
        if (n.endswith(("embeddings.position_embedding.weight", "embeddings.position_embeddings"))
            and not n.startswith("text_model."))
        or n in ("pos_embed", "visual.positional_embedding", "visual.trunk.pos_embed")
    )  # fmt: skip
    return name, found[name]


def fresh(model: Any) -> Any:
    """The model in fresh memory, in eval mode (memory-mapped weights take other BLAS paths)."""
    with torch.no_grad():
        for p in list(model.parameters()) + list(model.buffers()):
            p.data = p.data.clone()
    return model.eval()


def features(model: Any, pixels: torch.Tensor, interpolate: bool) -> torch.Tensor:
    forward = model.get_image_features if hasattr(model, "get_image_features") else model.forward
    kw = {"interpolate_pos_encoding": True} if interpolate and "interpolate_pos_encoding" in pyinspect.signature(
        forward
    ).parameters else {}  # fmt: skip
    out = forward(pixel_values=pixels, **kw)
    if isinstance(out, torch.Tensor):
        return out
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits  # every token where given


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_equals_its_own_runtime_in_transformers(xcr: Any, tmp_path: Path, family: str) -> None:
    import transformers
    from PIL import Image

    res, grid, cls_name = TARGETS[family]
    src = build_family(tmp_path / "src", family)
    out = tmp_path / "out"
    r = xcr("resize", "--model", src, "--res", res, "--out", out)
    assert r.code == 0, r.err
    assert f"{grid}×{grid} grid" in r.out
    if res % SIZES[family][1]:
        assert "is not a multiple of the patch size" in r.err

    cls = getattr(transformers, cls_name)
    model, info = cls.from_pretrained(out, output_loading_info=True)
    assert not any(v for k, v in info.items() if k != "error_msgs"), info
    processor = transformers.AutoImageProcessor.from_pretrained(out)
    pixels = processor(images=Image.new("RGB", (640, 480), (90, 120, 200)), return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape[-2:]) == (res, res), "the output's processor makes the new size"

    reference = fresh(cls.from_pretrained(src))
    model = fresh(model)
    x = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = features(model, x, interpolate=False), features(reference, x, interpolate=True)
    assert torch.equal(got, want), (got - want).abs().max()

    config = json.loads((out / "config.json").read_text())
    assert config.get("vision_config", config)["image_size"] == res
    if family == "siglip":  # the text tower's positions are never touched
        name = "text_model.embeddings.position_embedding.weight"
        assert torch.equal(weights(out)[name], weights(src)[name])


def only_the_table_changed(src: Path, out: Path, grid: int, prefix: int, antialias: bool) -> None:
    """The output's table is `expected_table`; every other tensor is the source's (ids aside)."""
    name, table = table_of(out)
    assert torch.equal(table, expected_table(src, grid, prefix, antialias))
    old, new = weights(src), weights(out)
    assert set(old) == set(new)
    for key in old:
        if key != name and not key.endswith("position_ids"):
            assert torch.equal(new[key], old[key]), key


def expected_table(src: Path, grid: int, prefix: int, antialias: bool) -> torch.Tensor:
    """F.interpolate with the documented semantics: size=, bicubic, align_corners False, float32."""
    _, table = table_of(src)
    flat = table.reshape(-1, table.shape[-1])
    old = int((flat.shape[0] - prefix) ** 0.5)
    cells = flat[prefix:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    new = F.interpolate(cells, size=(grid, grid), mode="bicubic", align_corners=False, antialias=antialias)
    return torch.cat([flat[:prefix], new.permute(0, 2, 3, 1).reshape(grid * grid, -1)]).reshape(
        *table.shape[:-2], -1, table.shape[-1]
    )


@pytest.mark.parametrize("fmt", ["bin", "sharded", "bin-sharded"])
@pytest.mark.parametrize("family", ["siglip", "dinov2-registers", "vit"])
def test_every_weight_format(tmp_path: Path, family: str, fmt: str) -> None:
    res, grid, _ = TARGETS[family]
    src = build_family(tmp_path / "src", family, fmt=fmt)
    resize(src, res, tmp_path / "out")
    prefix = 0 if family == "siglip" else 1
    _, got = table_of(tmp_path / "out")
    assert torch.equal(got, expected_table(src, grid, prefix, antialias=family == "dinov2-registers"))
    found = verify(tmp_path / "out", src)
    assert found.ok, found.checks


@pytest.mark.parametrize("family", ["siglip", "dinov2", "vit"])
def test_from_the_hub(hub: HubServer, tmp_path: Path, family: str) -> None:
    rid = f"tester/{family}-{tmp_path.name[-8:]}"
    hub.add(rid, build_family(tmp_path / "src", family))
    res, grid, _ = TARGETS[family]
    result = resize(rid, res, tmp_path / "out")
    assert result.outputs[0].grid == (grid, grid)
    only_the_table_changed(tmp_path / "src", tmp_path / "out", grid, 0 if family == "siglip" else 1, antialias=False)
    found = verify(tmp_path / "out")  # the source its record names, from the hub
    assert found.ok and found.source == rid, found.checks


def test_the_family_default_and_its_override(xcr: Any, tmp_path: Path) -> None:
    """DINOv2 with registers interpolates with antialias at run time: that is the default;
    --no-antialias overrides it, and the card records what was used."""
    src = build_family(tmp_path / "src", "dinov2-registers")
    for flag, antialias in (([], True), (["--no-antialias"], False)):
        out = tmp_path / f"out-{antialias}"
        r = xcr("resize", "--model", src, "--res", 448, "--out", out, *flag, "--quiet")
        assert r.code == 0, r.err
        _, got = table_of(out)
        assert torch.equal(got, expected_table(src, 32, 1, antialias))
        card = (out / "README.md").read_text()
        assert f"antialias: {str(antialias).lower()}" in card
    assert not torch.equal(table_of(tmp_path / "out-True")[1], table_of(tmp_path / "out-False")[1])


def test_dinov2_keeps_its_crop_share(tmp_path: Path) -> None:
    """BitImageProcessor resizes to 256 and crops 224: at 448 it resizes to 512 and crops 448."""
    src = build_family(tmp_path / "src", "dinov2")
    resize(src, 448, tmp_path / "out")
    pre = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert pre["size"] == {"shortest_edge": 512} and pre["crop_size"] == {"height": 448, "width": 448}


def test_a_siglip_config_without_image_size_gets_one(xcr: Any, tmp_path: Path) -> None:
    """google/siglip-base-patch16-224 states no vision image_size (transformers assumes 224): the
    output's config states the new one, or transformers would assume 224 again."""
    src = build_family(tmp_path / "src", "siglip", image_size=224, omit_image_size=True)
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert "does not state the vision image_size; transformers assumes 224 px" in r.err
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["vision_config"]["image_size"] == 448
    assert verify(tmp_path / "out", src).ok


def test_siglip2_naflex_is_refused_with_the_reason(xcr: Any, tmp_path: Path) -> None:
    src = build_family(tmp_path / "src", "siglip")
    config = json.loads((src / "config.json").read_text())
    config["model_type"] = "siglip2"
    (src / "config.json").write_text(json.dumps(config))
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out")
    assert r.code == 2
    line = one_error_line(r.err)
    assert "model_type 'siglip2'" in line and "resizes its position table for every image" in line
    assert not (tmp_path / "out").exists()


def test_an_unknown_layout_names_what_was_found_and_family_forces_one(xcr: Any, tmp_path: Path) -> None:
    src = build_family(tmp_path / "src", "vit")
    config = json.loads((src / "config.json").read_text())
    config["model_type"] = "my_vit"
    (src / "config.json").write_text(json.dumps(config))
    r = xcr("resize", "--model", src, "--res", 384, "--out", tmp_path / "out")
    assert r.code == 2
    line = one_error_line(r.err)
    assert "config.json has model_type 'my_vit'" in line and f"--family {'|'.join(NAMES)}" in line
    r = xcr("resize", "--model", src, "--res", 384, "--out", tmp_path / "out", "--family", "ViT", "--quiet")
    assert r.code == 0, r.err
    assert table_of(tmp_path / "out")[1].shape == (1, 1 + 24 * 24, 32)
    r = xcr("resize", "--model", src, "--res", 384, "--out", tmp_path / "o2", "--family", "resnet")
    assert r.code == 2
    assert one_error_line(r.err) == (
        f"xcr: error: --family resnet is not a family xcr knows; use one of {', '.join(NAMES)}"
    )


@pytest.mark.parametrize(("family", "name", "method"), [
    ("siglip", "SigLIP", "bicubic (= transformers' SiglipVisionEmbeddings"),
    ("dinov2-registers", "DINOv2 with registers", "bicubic, antialias (= transformers'"),
])  # fmt: skip
def test_inspect_knows_the_family(xcr: Any, tmp_path: Path, family: str, name: str, method: str) -> None:
    src = build_family(tmp_path / "src", family)
    r = xcr("inspect", src, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["family"] == name and data["method"].startswith(method)
    assert data["prefix_tokens"] == (0 if family == "siglip" else 1)
    side = SIZES[family][0] // SIZES[family][1]
    assert data["grid"] == [side, side]


def test_vision_only_of_a_vision_model_changes_nothing_but_is_allowed(tmp_path: Path) -> None:
    src = build_family(tmp_path / "src", "dinov2")
    resize(src, 448, tmp_path / "out", vision_only=True)
    assert verify(tmp_path / "out", src).ok


# ---------------------------------------------------------------- timm's hub layout
# timm cannot be imported here (its torchvision does not load beside the CPU torch): the table is
# checked against F.interpolate with the semantics of timm's resample_abs_pos_embed (size=, bicubic,
# antialias=True, align_corners=False, float32, prefix rows kept), and every config key timm reads.


@pytest.mark.parametrize("prefix", ["cls", "none", "cls+reg4"])
def test_timm_table_and_configs(xcr: Any, tmp_path: Path, prefix: str) -> None:
    from tests.family_builders import TIMM_PREFIX, build_timm

    src = build_timm(tmp_path / "src", prefix=prefix, model_args=prefix == "none")
    r = xcr("resize", "--model", src, "--res", 384, "--out", tmp_path / "out")
    assert r.code == 0, r.err
    _, got = table_of(tmp_path / "out")
    rows = TIMM_PREFIX[prefix]
    assert got.shape == (1, rows + 24 * 24, 32)
    assert torch.equal(got, expected_table(src, 24, rows, antialias=True))
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 384, 384]
    assert config["model_args"]["img_size"] == 384, "without it timm resamples back to the architecture's size"
    if prefix == "none":
        assert config["model_args"]["no_embed_class"] is True, "other model_args are kept"
    assert config["architecture"] == "vit_tiny_patch16_224" and config["num_classes"] == 10
    card = (tmp_path / "out" / "README.md").read_text()
    assert "library_name: timm" in card and "resample_abs_pos_embed" in card
    found = verify(tmp_path / "out", src)
    assert found.ok, found.checks
    assert [c.check for c in found.checks if c.ok is None] == ["load"], "no transformers oracle for timm"


@pytest.mark.parametrize("fmt", ["bin", "sharded"])
def test_timm_from_the_hub(hub: HubServer, tmp_path: Path, fmt: str) -> None:
    from tests.family_builders import build_timm

    rid = f"timm/vit_tiny_patch16_224.{tmp_path.name[-8:]}"
    hub.add(rid, build_timm(tmp_path / "src", fmt=fmt))
    result = resize(rid, 448, tmp_path / "out")
    assert result.outputs[0].grid == (28, 28)
    assert torch.equal(table_of(tmp_path / "out")[1], expected_table(tmp_path / "src", 28, 1, antialias=True))
    assert verify(tmp_path / "out").ok


def test_timm_sizes_that_disagree(xcr: Any, tmp_path: Path) -> None:
    from tests.family_builders import build_timm

    src = build_timm(tmp_path / "src", model_args=True)
    config = json.loads((src / "config.json").read_text())
    config["model_args"]["img_size"] = 256
    (src / "config.json").write_text(json.dumps(config))
    r = xcr("resize", "--model", src, "--res", 384, "--out", tmp_path / "out")
    assert r.code == 2 and "pretrained_cfg.input_size 224 px but model_args.img_size 256 px" in r.err
    config["model_args"]["img_size"] = [224, 320]
    (src / "config.json").write_text(json.dumps(config))
    r = xcr("resize", "--model", src, "--res", 384, "--out", tmp_path / "out")
    assert r.code == 2 and "input_size 224 px but model_args.img_size 224×320 px" in one_error_line(r.err)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- open_clip's hub layout
# open_clip cannot be imported here either: the table is checked against F.interpolate with the
# semantics of open_clip's resize_pos_embed (size=, bicubic, antialias=True, align_corners=False,
# the class row kept), and every key open_clip reads.


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_open_clip_table_and_config(xcr: Any, tmp_path: Path, fmt: str) -> None:
    from tests.family_builders import build_open_clip

    src = build_open_clip(tmp_path / "src", fmt=fmt)
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out")
    assert r.code == 0, r.err
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "open_clip_config.json",
        "open_clip_model.safetensors",
    ]
    name, got = table_of(out)
    assert name == "visual.positional_embedding" and got.shape == (1 + 28 * 28, 32)
    assert torch.equal(got, expected_table(src, 28, 1, antialias=True))
    text = weights(out)["positional_embedding"]
    assert torch.equal(text, weights(src)["positional_embedding"]), "the text tower's positions are never touched"
    config = json.loads((out / "open_clip_config.json").read_text())
    assert config["model_cfg"]["vision_cfg"]["image_size"] == 448
    assert (
        config["model_cfg"]["text_cfg"]
        == json.loads((src / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"]
    )
    assert "library_name: open_clip" in (out / "README.md").read_text()
    found = verify(out, src)
    assert found.ok, found.checks
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "vo", "--vision-only")
    assert r.code == 2 and "checkpoints have no vision-only layout that open_clip loads" in one_error_line(r.err)


def test_open_clip_from_the_hub(hub: HubServer, tmp_path: Path) -> None:
    from tests.family_builders import build_open_clip

    rid = f"laion/tiny-open-clip-{tmp_path.name[-8:]}"
    hub.add(rid, build_open_clip(tmp_path / "src", fmt="bin"))
    result = resize(rid, 336, tmp_path / "out")
    assert result.outputs[0].grid == (21, 21)
    only_the_table_changed(tmp_path / "src", tmp_path / "out", 21, 1, antialias=True)
    assert verify(tmp_path / "out").ok


# The fields of open_clip 3.3.0's CLIPVisionCfg (src/open_clip/model.py), the latest release: its
# _build_vision_tower calls CLIPVisionCfg(**vision_cfg), a TypeError for any other key, so an output's
# vision_cfg may hold these only (timm_model_kwargs is not among them: open_clip reads it after 3.3.0).
OPEN_CLIP_3_3_VISION_FIELDS = frozenset({
    "layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size", "ls_init_value", "patch_dropout",
    "attentional_pool", "attn_pooler_queries", "attn_pooler_heads", "no_ln_pre", "pos_embed_type",
    "final_ln_after_pool", "pool_type", "output_tokens", "act_kwargs", "norm_kwargs", "block_type", "qk_norm",
    "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn", "scale_fc", "timm_model_name",
    "timm_model_pretrained", "timm_pool", "timm_proj", "timm_proj_bias", "timm_drop", "timm_drop_path",
})  # fmt: skip


def open_clip_vision(folder: Path) -> dict[str, Any]:
    vision: dict[str, Any] = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]["vision_cfg"]
    return vision


@pytest.mark.parametrize(("trunk", "prefix", "res", "arch"), [
    ("siglip", 0, 224, "vit_so400m_patch14_siglip_224"),
    ("siglip", 0, 378, "vit_so400m_patch14_siglip_378"),  # the same 27×27 grid as 384: a new name, the same table
    ("clip", 1, 384, "vit_base_patch16_clip_384"),
])  # fmt: skip
def test_open_clip_on_a_timm_trunk(xcr: Any, tmp_path: Path, trunk: str, prefix: int, res: int, arch: str) -> None:
    """timm/ViT-SO400M-14-SigLIP-384 and the like: the table is the trunk's `visual.trunk.pos_embed`,
    with timm's prefix rows. open_clip 3.3.0 builds the trunk at the size its timm architecture
    states and loads the table strictly, so the output names timm's architecture of the same network
    at the new size, and its config holds no key 3.3.0 refuses."""
    from tests.family_builders import OPEN_CLIP_TRUNKS, build_open_clip

    src = build_open_clip(tmp_path / "src", trunk=trunk)
    _, size, patch, _ = OPEN_CLIP_TRUNKS[trunk]
    out = tmp_path / "out"
    r = xcr("resize", "--model", src, "--res", res, "--out", out)
    assert r.code == 0, r.err
    assert f"the trunk becomes {arch}, timm's {OPEN_CLIP_TRUNKS[trunk][0]} network at {res} px" in " ".join(
        r.err.split()
    )
    grid = res // patch
    name, got = table_of(out)
    assert name == "visual.trunk.pos_embed" and got.shape == (1, prefix + grid * grid, 32)
    assert torch.equal(got, expected_table(src, grid, prefix, antialias=True))
    text = "text.positional_embedding"
    assert torch.equal(weights(out)[text], weights(src)[text])
    vision = open_clip_vision(out)
    assert set(vision) <= OPEN_CLIP_3_3_VISION_FIELDS, set(vision) - OPEN_CLIP_3_3_VISION_FIELDS
    assert vision == {**open_clip_vision(src), "image_size": res, "timm_model_name": arch}
    assert "resample_abs_pos_embed" in (out / "README.md").read_text()
    found = verify(out, src)
    assert found.ok, found.checks

    # back from the output to the source's size: the source's architecture again
    back = tmp_path / "back"
    assert xcr("resize", "--model", out, "--res", size, "--out", back).code == 0
    assert open_clip_vision(back) == open_clip_vision(src)
    assert table_of(back)[1].shape == table_of(src)[1].shape
    assert verify(back, out).ok

    r = xcr("inspect", src, "--json")
    data = json.loads(r.out)
    assert data["table"]["name"] == "visual.trunk.pos_embed" and data["prefix_tokens"] == prefix
    assert data["image_size"] == size and data["patch_size"] == patch
    assert data["accepted_res"]["non_square"] is False


def test_open_clip_trunk_sizes_that_timm_has_no_architecture_for(xcr: Any, tmp_path: Path) -> None:
    """open_clip 3.3.0 cannot be told a trunk's size: a size timm has no architecture of the same
    network for is refused, with the sizes that exist and the load-time way; nothing is written."""
    from tests.family_builders import build_open_clip

    src = build_open_clip(tmp_path / "src", trunk="siglip")  # vit_so400m_patch14_siglip_384
    r = xcr("resize", "--model", src, "--res", 768, "--out", tmp_path / "out")
    assert r.code == 2
    assert one_error_line(r.err) == (
        "xcr: error: open_clip 3.3.0 cannot build this tower at 768 px: it builds the timm trunk at the size the "
        "architecture states (vit_so400m_patch14_siglip_384), and timm has that network at 224, 378 and 384 px only "
        "(vit_so400m_patch14_siglip_N); convert to one of those, or load the source with "
        "open_clip.create_model_and_transforms(..., force_image_size=768), which resamples the table the same way "
        "as it loads"
    )
    assert not (tmp_path / "out").exists()
    r = xcr("resize", "--model", src, "--res", 224, "--res", 768, "--out", tmp_path / "out-{res}")
    assert r.code == 2 and not list(tmp_path.glob("out-*")), "refused before any output is written"
    r = xcr("resize", "--model", src, "--res", "384x768", "--out", tmp_path / "out")
    assert r.code == 2
    assert "384x768 is not square, and a open_clip checkpoint cannot be: open_clip 3.3.0 builds a timm trunk at " \
        "the size its architecture states, and timm's are square" in one_error_line(r.err)  # fmt: skip
    _edit_open_clip(src, timm_model_name="my_custom_vit_384")
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out")
    assert r.code == 2
    assert "(my_custom_vit_384), and xcr knows no other size of my_custom_vit_384 in timm; load the source with " \
        "open_clip.create_model_and_transforms(..., force_image_size=448)" in " ".join(r.err.split())  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_open_clip_trunk_stated_with_timm_model_kwargs(xcr: Any, tmp_path: Path) -> None:
    """A source that states vision_cfg.timm_model_kwargs is for an open_clip after 3.3.0, which builds
    the trunk with timm.create_model(name, **timm_model_kwargs): the new size goes there, any size,
    and a note says which open_clip loads it."""
    from tests.family_builders import build_open_clip

    src = build_open_clip(tmp_path / "src", trunk="siglip")
    config = json.loads((src / "open_clip_config.json").read_text())
    config["model_cfg"]["vision_cfg"]["timm_model_kwargs"] = {"img_size": 224, "drop_path_rate": 0.1}
    (src / "open_clip_config.json").write_text(json.dumps(config))
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out")
    assert r.code == 2
    assert "vision_cfg.image_size 384 px but timm_model_kwargs.img_size 224 px" in one_error_line(r.err)
    config["model_cfg"]["vision_cfg"]["timm_model_kwargs"]["img_size"] = 384
    config["preprocess_cfg"]["size"] = 384
    (src / "open_clip_config.json").write_text(json.dumps(config))
    r = xcr("resize", "--model", src, "--res", 768, "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert "which open_clip reads only after 3.3.0 (3.3.0 refuses the key)" in " ".join(r.err.split())
    written = json.loads((tmp_path / "out" / "open_clip_config.json").read_text())
    vision = written["model_cfg"]["vision_cfg"]
    assert vision["timm_model_kwargs"] == {"img_size": 768, "drop_path_rate": 0.1}, "other kwargs are kept"
    assert vision["timm_model_name"] == "vit_so400m_patch14_siglip_384" and vision["image_size"] == 768
    assert written["preprocess_cfg"]["size"] == 768
    assert table_of(tmp_path / "out")[1].shape == (1, 54 * 54, 32)
    assert verify(tmp_path / "out", src).ok

    # non-square too, and back from that output (which states timm_model_kwargs.img_size)
    wide = tmp_path / "wide"
    assert xcr("resize", "--model", tmp_path / "out", "--res", "384x768", "--out", wide).code == 0
    vision = open_clip_vision(wide)
    assert vision["image_size"] == [384, 768] and vision["timm_model_kwargs"]["img_size"] == [384, 768]
    assert table_of(wide)[1].shape == (1, 27 * 54, 32)
    assert verify(wide, tmp_path / "out").ok
    assert json.loads(xcr("inspect", src, "--json").out)["accepted_res"]["non_square"] is True


def test_open_clip_trunk_whose_size_disagrees_with_its_architecture(xcr: Any, tmp_path: Path) -> None:
    """open_clip 3.3.0 builds vit_so400m_patch14_siglip_384 at 384 px whatever image_size says."""
    from tests.family_builders import build_open_clip

    src = build_open_clip(tmp_path / "src", trunk="siglip")
    _edit_open_clip(src, image_size=448)
    r = xcr("resize", "--model", src, "--res", 224, "--out", tmp_path / "out")
    assert r.code == 2
    assert (
        "says vision_cfg.image_size 448 px but open_clip 3.3.0 builds the trunk vit_so400m_patch14_siglip_384 at "
        "384 px: make them agree"
    ) in one_error_line(r.err)


def test_open_clip_trunk_from_the_hub(hub: HubServer, tmp_path: Path) -> None:
    from tests.family_builders import build_open_clip

    rid = f"timm/ViT-SO400M-14-SigLIP-384-{tmp_path.name[-8:]}"
    hub.add(rid, build_open_clip(tmp_path / "src", trunk="siglip", fmt="bin"))
    result = resize(rid, 224, tmp_path / "out")
    assert result.outputs[0].grid == (16, 16)
    assert open_clip_vision(tmp_path / "out")["timm_model_name"] == "vit_so400m_patch14_siglip_224"
    only_the_table_changed(tmp_path / "src", tmp_path / "out", 16, 0, antialias=True)
    assert verify(tmp_path / "out").ok


def test_a_repo_with_both_layouts_converts_the_transformers_one(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    """laion's repos carry transformers files and open_clip's: the transformers checkpoint is
    converted; open_clip's config and weights (the old grid) are not carried over, and a note says so."""
    from tests.family_builders import build_open_clip

    src = make_ckpt()
    oc = build_open_clip(tmp_path / "oc", fmt="bin")
    for name in ("open_clip_config.json", "open_clip_pytorch_model.bin"):
        (src / name).write_bytes((oc / name).read_bytes())
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert "open_clip_config.json" in r.err and "not carried over" in r.err
    assert not (tmp_path / "out" / "open_clip_config.json").exists()
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "oc-out", "--family", "open_clip", "--quiet")
    assert r.code == 0, r.err
    assert (
        json.loads((tmp_path / "oc-out" / "open_clip_config.json").read_text())["model_cfg"]["vision_cfg"]["image_size"]
        == 448
    )
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "oc-out")  # --family forgotten
    assert r.code == 2
    assert "was made reading the source as open_clip, not as CLIP; pass --force" in one_error_line(r.err)
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "oc-out", "--family", "open-clip")
    assert r.code == 0 and "up to date" in r.out, r.err


def test_timm_vision_only_keeps_its_config_and_test_size_scales(tmp_path: Path) -> None:
    from tests.family_builders import build_timm

    src = build_timm(tmp_path / "src", prefix="cls+reg4", model_args=True)
    config = json.loads((src / "config.json").read_text())
    config["pretrained_cfg"]["test_input_size"] = [3, 256, 256]
    (src / "config.json").write_text(json.dumps(config))
    resize(src, 448, tmp_path / "out", vision_only=True)
    out = json.loads((tmp_path / "out" / "config.json").read_text())
    assert out["architecture"] == config["architecture"] and out["num_classes"] == 10
    assert out["pretrained_cfg"]["input_size"] == [3, 448, 448]
    assert out["pretrained_cfg"]["test_input_size"] == [3, 512, 512], "the same share above the input size"
    assert out["pretrained_cfg"]["crop_pct"] == 0.9 and out["model_args"]["img_size"] == 448
    card = (tmp_path / "out" / "README.md").read_text()
    assert "`config.json` states the new resolution, so `timm.create_model` loads it at 448 px" in card
    assert "5 prefix rows copied" in card
    assert verify(tmp_path / "out", src).ok


def test_family_must_not_contradict_the_config(xcr: Any, tmp_path: Path) -> None:
    src = build_family(tmp_path / "src", "dinov2-registers")
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out", "--family", "dinov2")
    assert r.code == 2
    assert one_error_line(r.err) == (
        "xcr: error: --family dinov2 contradicts the config, which is of the DINOv2 with registers family "
        "(model_type 'dinov2_with_registers'); leave --family out (it is for configs that name no family xcr knows)"
    )
    assert not (tmp_path / "out").exists()


def test_a_forced_family_is_verified_as_that_family(xcr: Any, tmp_path: Path) -> None:
    src = build_family(tmp_path / "src", "dinov2")
    config = json.loads((src / "config.json").read_text())
    del config["model_type"]
    (src / "config.json").write_text(json.dumps(config))
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out", "--family", "dinov2", "--verify")
    assert r.code == 0, r.err
    assert "all 5 checks that ran passed" in r.out
    # later, without --family: the output's record names the family its config does not
    r = xcr("verify", tmp_path / "out", "--against", src)
    assert r.code == 0 and "all 5 checks that ran passed" in r.out, r.err
    r = xcr("inspect", tmp_path / "out", "--plot", tmp_path / "table.png")
    assert r.code == 0, r.err
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out", "--family", "dinov2")
    assert r.code == 0 and "up to date" in r.out, r.err


def test_siglip_has_no_projection_to_keep(xcr: Any, tmp_path: Path) -> None:
    src = build_family(tmp_path / "src", "siglip")
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out", "--vision-only", "--with-projection")
    assert r.code == 2
    assert one_error_line(r.err) == (
        "xcr: error: SigLIP vision towers have no projection to keep (SiglipVisionModel has none); "
        "leave --with-projection out"
    )


@pytest.mark.parametrize("layout", ["timm", "open_clip"])
def test_a_cast_leaves_timm_and_open_clip_configs_without_a_dtype(tmp_path: Path, layout: str) -> None:
    """timm and open_clip take the dtype from the weights; a transformers `torch_dtype` key would be noise."""
    from tests.family_builders import build_open_clip, build_timm

    src = build_timm(tmp_path / "src") if layout == "timm" else build_open_clip(tmp_path / "src")
    resize(src, 448, tmp_path / "out", dtype="float16")
    name = "config.json" if layout == "timm" else "open_clip_config.json"
    assert "dtype" not in (tmp_path / "out" / name).read_text()
    assert {t.dtype for t in weights(tmp_path / "out").values()} == {torch.float16}
    found = verify(tmp_path / "out", src)
    assert found.ok, found.checks


def _edit_open_clip(src: Path, **vision: Any) -> None:
    config = json.loads((src / "open_clip_config.json").read_text())
    for key, value in vision.items():
        if value is None:
            config["model_cfg"]["vision_cfg"].pop(key, None)
        else:
            config["model_cfg"]["vision_cfg"][key] = value
    (src / "open_clip_config.json").write_text(json.dumps(config))


def test_a_trunk_whose_config_disagrees_with_its_weights_is_refused(xcr: Any, tmp_path: Path) -> None:
    """Rows beyond the config's grid are prefix rows only when the weights have those tokens."""
    from tests.family_builders import build_open_clip

    src = build_open_clip(tmp_path / "src", trunk="siglip")  # 27×27 of 14 px, no class token
    _edit_open_clip(src, image_size=370, timm_model_kwargs={"img_size": 370})
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out")
    assert r.code == 2
    line = one_error_line(r.err)
    assert "says 370 px with 14-px patches (26×26) but visual.trunk.pos_embed holds a 27×27 grid" in line
    assert not (tmp_path / "out").exists()
    assert json.loads(xcr("inspect", src, "--json").out)["prefix_tokens"] == 0


def test_a_trunk_patch_and_size_come_from_the_weights_and_the_architecture(xcr: Any, tmp_path: Path) -> None:
    from tests.family_builders import build_open_clip

    src = build_open_clip(tmp_path / "src", trunk="siglip")
    _edit_open_clip(src, image_size=None, timm_model_name="my_custom_vit_384")  # no "patch14" in the name
    r = xcr("resize", "--model", src, "--res", 384, "--out", tmp_path / "out")  # the one size it is built at
    assert r.code == 0, r.err
    assert "the weights' patch embedding has 14-px patches" in " ".join(r.err.split())
    assert table_of(tmp_path / "out")[1].shape == (1, 27 * 27, 32)
    assert open_clip_vision(tmp_path / "out")["timm_model_name"] == "my_custom_vit_384"
    data = json.loads(xcr("inspect", src, "--json").out)
    assert data["patch_size"] == 14 and data["image_size"] == 384 and data["grid"] == [27, 27]


def test_a_trunk_without_a_position_table_says_there_is_nothing_to_resize(xcr: Any, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from tests.family_builders import build_open_clip

    src = build_open_clip(tmp_path / "src", trunk="clip")
    _edit_open_clip(src, timm_model_name="convnext_base")
    weights = load_file(str(src / "open_clip_model.safetensors"))
    save_file({k: v for k, v in weights.items() if "pos_embed" not in k}, str(src / "open_clip_model.safetensors"))
    r = xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out")
    assert r.code == 2 and "has no absolute position table (visual.trunk.pos_embed)" in one_error_line(r.err)
    fine = build_open_clip(tmp_path / "fine", trunk="clip")
    r = xcr("resize", "--model", fine, "--res", 384, "--out", tmp_path / "out", "--vision-only", "--with-projection")
    assert r.code == 2 and "no vision-only layout" in one_error_line(r.err)


def test_open_clip_files_of_a_dual_repo_in_inspect_plot_and_output(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    from tests.family_builders import build_open_clip

    src = make_ckpt()
    oc = build_open_clip(tmp_path / "oc", fmt="bin")
    for name in ("open_clip_config.json", "open_clip_pytorch_model.bin"):
        (src / name).write_bytes((oc / name).read_bytes())
    data = json.loads(xcr("inspect", src, "--family", "open-clip", "--json").out)
    assert data["table"]["name"] == "visual.positional_embedding" and data["grid"] == [14, 14]
    out = tmp_path / "out"
    r = xcr("resize", "--model", src, "--family", "open-clip", "--res", 448, "--out", out, "--plot", tmp_path / "p.png")
    assert r.code == 0, r.err
    assert not (out / "preprocessor_config.json").exists(), "the transformers layout's processor is left behind"
    assert (tmp_path / "p.png").is_file()
    from xcomposer_resize.commands.plot import _panel

    panel, family = _panel(src, "source", "open_clip")  # what --plot drew for the source: open_clip's table
    assert family == "open_clip" and panel.title.startswith("source: 14×14 grid, 224 px")
    found = verify(out, src)
    assert found.ok, found.checks


def test_verify_against_a_checkpoint_of_another_family(xcr: Any, tmp_path: Path) -> None:
    src = build_family(tmp_path / "src", "vit")
    resize(src, 384, tmp_path / "out")
    other = build_family(tmp_path / "other", "dinov2")
    r = xcr("verify", tmp_path / "out", "--against", other)
    assert r.code == 2
    assert "is a checkpoint of the DINOv2 family, and" in one_error_line(r.err)
    assert "--family" not in one_error_line(r.err), "no flag the user did not pass"


def test_a_recorded_family_in_any_spelling_and_a_bad_one(xcr: Any, tmp_path: Path) -> None:
    src = build_family(tmp_path / "src", "dinov2")
    config = json.loads((src / "config.json").read_text())
    del config["model_type"]
    (src / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 448, "--out", out, "--family", "dinov2").code == 0
    card = (out / "README.md").read_text()
    assert "family: DINOv2" in card
    r = xcr("resize", "--model", src, "--res", 448, "--out", out, "--family", "dinov2-registers")
    assert r.code == 2 and "was made reading the source as DINOv2, not as DINOv2 with registers" in r.err
    (out / "README.md").write_text(card.replace("family: DINOv2", "family: banana"))
    r = xcr("inspect", out)
    assert r.code == 2 and "model card records the family 'banana', which is not a family xcr knows" in r.err
    r = xcr("resize", "--model", src, "--res", 448, "--out", out, "--family", "dinov2")
    assert r.code == 2 and "was made reading the source as banana" in r.err


def test_a_converted_output_as_the_source_keeps_one_card_and_its_size_tag(tmp_path: Path) -> None:
    src = build_family(tmp_path / "src", "vit")
    (src / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- vision\n---\n# The original card\n")
    resize(src, 384, tmp_path / "a")
    resize(tmp_path / "a", 448, tmp_path / "b")
    card = (tmp_path / "b" / "README.md").read_text()
    assert card.count("## The source's model card") == 1 and "# The original card" in card
    assert "- 448px" in card and "- 384px" not in card
