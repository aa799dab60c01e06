"""resize_model: the same resize inside a training script, checked against transformers' own run-time
interpolation and against the command's output, for every family with a transformers class."""

from __future__ import annotations

import copy
import inspect
import json
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.family_builders import SIZES, build_family
from tests.test_convert import POS, tensors
from xcomposer_resize import Size, XcrError, resize, resize_model
from xcomposer_resize.errors import UsageError
from xcomposer_resize.interpolate import resample_grid

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1}


def fresh(model: Any) -> Any:
    """The model in fresh, aligned memory and eval mode: BLAS takes other paths for memory-mapped,
    unaligned weights, which changes last bits (as verify.load._fresh)."""
    with torch.no_grad():
        for p in list(model.parameters()) + list(model.buffers()):
            p.data = p.data.clone()
    return model.eval()


def features(model: Any, pixels: torch.Tensor, interpolate: bool = False) -> torch.Tensor:
    """Image features (projected where the model projects, else the last hidden states or logits);
    `interpolate`: with transformers' run-time interpolate_pos_encoding (DINOv2 takes no flag: it
    interpolates on every forward)."""
    takes = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters
    kw = {"interpolate_pos_encoding": True} if interpolate and takes else {}
    with torch.no_grad():
        if hasattr(model, "get_image_features"):
            out = model.get_image_features(pixel_values=pixels, **kw)
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        got = model(pixel_values=pixels, **kw)
        return got.logits if getattr(got, "logits", None) is not None else got.last_hidden_state


def clip_vision(image_size: int = 56, patch_size: int = 14) -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    return CLIPVisionModel(CLIPVisionConfig(**TINY, image_size=image_size, patch_size=patch_size))


def embeddings_of(model: Any) -> Any:
    """A CLIP vision tower's embeddings module (transformers 5 names CLIPVisionModel's without `vision_model.`)."""
    return model.get_submodule(next(n for n, _ in model.named_modules() if n.endswith("embeddings")))


def table_of(model: Any) -> torch.nn.Parameter:
    return embeddings_of(model).position_embedding.weight  # type: ignore[no-any-return]


# ---------------------------------------------------------------- every family, against transformers


# family → a size to resize its tiny checkpoint (family_builders.SIZES) to; ViT also to a non-square one
FAMILY_SIZES = [("siglip", 448), ("siglip-vision", 280), ("dinov2", 280), ("dinov2-registers", 168), ("vit", 288),
                ("vit", "160x256")]  # fmt: skip


@pytest.mark.parametrize(("family", "res"), FAMILY_SIZES)
def test_every_family_runs_as_transformers_interpolates_and_saves_what_the_command_writes(
    tmp_path: Path, family: str, res: int | str
) -> None:
    import transformers

    src = build_family(tmp_path / "src", family)
    resize(src, res, tmp_path / "cmd")
    cls = getattr(transformers, json.loads((src / "config.json").read_text())["architectures"][0])
    source, model = fresh(cls.from_pretrained(src)), cls.from_pretrained(src)
    assert resize_model(model, res) is model
    fresh(model)

    # (a) at the new size, without interpolate_pos_encoding: the source interpolating at run time
    size = Size.parse(str(res))
    assert size is not None
    pixels = torch.randn(2, 3, *size.sides, generator=torch.Generator().manual_seed(0))
    got, want = features(model, pixels), features(source, pixels, interpolate=True)
    assert got.shape == want.shape
    assert torch.equal(got, want), (got - want).abs().max()

    # (b) save_pretrained writes the command's tensors; (c) its config states the new size, as the command's
    model.save_pretrained(tmp_path / "saved")
    cmd, saved = tensors(tmp_path / "cmd"), tensors(tmp_path / "saved")
    assert set(saved) == {n for n in cmd if not n.endswith("position_ids")}
    assert any(n.endswith(("position_embedding.weight", "position_embeddings")) for n in saved)
    for name in saved:
        assert torch.equal(saved[name], cmd[name]), name
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    stated = json.loads((tmp_path / "cmd" / "config.json").read_text())
    vision, expected = config.get("vision_config", config), stated.get("vision_config", stated)
    assert vision["image_size"] == expected["image_size"] == size.json()
    assert vision["image_size"] != SIZES[family][0]


@pytest.mark.parametrize(
    ("kind", "cls_name"),
    [("full", "CLIPModel"), ("vision", "CLIPVisionModel"), ("vision-proj", "CLIPVisionModelWithProjection")],
)
def test_clip_runs_as_transformers_interpolates_and_saves_what_the_command_writes(
    make_ckpt: Any, tmp_path: Path, kind: str, cls_name: str
) -> None:
    import transformers

    src = make_ckpt(kind=kind, naming="v4")
    resize(src, 490, tmp_path / "cmd")
    cls = getattr(transformers, cls_name)
    source, model = fresh(cls.from_pretrained(src)), cls.from_pretrained(src)
    fresh(resize_model(model, 490))
    pixels = torch.randn(1, 3, 490, 490, generator=torch.Generator().manual_seed(0))
    assert torch.equal(features(model, pixels), features(source, pixels, interpolate=True))
    model.save_pretrained(tmp_path / "saved")
    cmd, saved = tensors(tmp_path / "cmd"), tensors(tmp_path / "saved")
    shared = set(saved) & set(cmd)
    assert any(n.endswith("position_embedding.weight") for n in shared)
    for name in shared:
        assert torch.equal(saved[name], cmd[name]), name
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    size = config["vision_config"]["image_size"] if kind == "full" else config["image_size"]
    assert size == 490


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_models_are_resampled_in_float32(make_ckpt: Any, tmp_path: Path, dtype: torch.dtype) -> None:
    from transformers import CLIPVisionModel

    src = make_ckpt(kind="vision", dtype=dtype)
    resize(src, 224, tmp_path / "cmd")
    model = resize_model(CLIPVisionModel.from_pretrained(src, dtype=dtype), 224)
    emb = model.vision_model.embeddings if hasattr(model, "vision_model") else model.embeddings
    assert emb.position_embedding.weight.dtype == dtype
    assert torch.equal(emb.position_embedding.weight.detach(), tensors(tmp_path / "cmd")[POS])
    assert emb.position_embedding.weight.requires_grad
    assert emb.image_size == 224 and emb.num_positions == 1 + 16 * 16 and emb.position_ids.shape == (1, 257)
    assert emb.position_embedding.num_embeddings == 257


# ---------------------------------------------------------------- defaults and forms


def test_the_interpolation_defaults_to_the_family_s_and_can_be_chosen() -> None:
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    torch.manual_seed(0)
    config = Dinov2WithRegistersConfig(**TINY, image_size=56, patch_size=14, num_register_tokens=2)
    before = Dinov2WithRegistersModel(config).embeddings.position_embeddings.detach().clone()
    for kwargs, want in [
        ({}, resample_grid(before, (6, 6), 1, mode="bicubic", antialias=True)),  # the family's: antialias
        ({"antialias": False}, resample_grid(before, (6, 6), 1, mode="bicubic", antialias=False)),
        ({"mode": "nearest"}, resample_grid(before, (6, 6), 1, mode="nearest")),  # no antialias for nearest
    ]:
        model = Dinov2WithRegistersModel(copy.deepcopy(config))  # resize_model restates the model's config
        model.embeddings.position_embeddings.data.copy_(before)
        resize_model(model, 84, **kwargs)
        assert torch.equal(model.embeddings.position_embeddings.detach(), want), kwargs
    assert not torch.equal(
        resample_grid(before, (6, 6), 1, antialias=True), resample_grid(before, (6, 6), 1, antialias=False)
    )


def test_a_vit_runs_non_square_without_interpolating() -> None:
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    model = ViTModel(ViTConfig(**TINY, image_size=64, patch_size=16), add_pooling_layer=False)
    resize_model(model, Size(48, 80))
    emb = model.embeddings
    assert emb.position_embeddings.shape == (1, 1 + 3 * 5, 32)
    assert emb.image_size == emb.patch_embeddings.image_size == (48, 80) and emb.patch_embeddings.num_patches == 15
    assert model.config.image_size == [48, 80]
    assert features(model.eval(), torch.randn(1, 3, 48, 80)).shape == (1, 16, 32)
    resize_model(model, "64x48")  # from a non-square grid: the config's, not a square root
    assert emb.position_embeddings.shape == (1, 1 + 4 * 3, 32) and model.config.image_size == [64, 48]


def test_a_tower_inside_another_module_is_found() -> None:
    class VisionTower(torch.nn.Module):  # XComposer's CLIPVisionTower: a plain module around the model
        def __init__(self) -> None:
            super().__init__()
            self.vision_tower = clip_vision()

    wrapper = VisionTower()
    assert resize_model(wrapper, 84) is wrapper
    assert table_of(wrapper.vision_tower).shape == (1 + 6 * 6, 32)
    assert wrapper.vision_tower.config.image_size == 84
    assert features(wrapper.vision_tower.eval(), torch.randn(1, 3, 84, 84)).shape == (1, 37, 32)


def test_a_table_xcomposer_resized_already_keeps_its_numbers_and_gets_its_sizes() -> None:
    model = clip_vision()  # 56 px, 4×4; then XComposer's resize_pos to 6×6, which leaves the sizes at 56
    emb = embeddings_of(model)
    emb.position_embedding = torch.nn.Embedding(37, 32)
    emb.register_buffer("position_ids", torch.arange(37).expand((1, -1)), persistent=False)
    table = table_of(model)
    with pytest.raises(ValueError, match="doesn't match model"):
        model(pixel_values=torch.randn(1, 3, 84, 84))
    resize_model(model, 84)
    assert table_of(model) is table
    assert model.config.image_size == emb.image_size == 84 and emb.num_positions == 37
    assert model(pixel_values=torch.randn(1, 3, 84, 84)).last_hidden_state.shape == (1, 37, 32)


def test_the_same_grid_keeps_the_table_and_states_the_size() -> None:
    model = clip_vision()
    table = table_of(model)
    with pytest.warns(UserWarning, match=r"res=60 is not a multiple of the patch size 14: the 4×4 grid covers 56 px"):
        assert resize_model(model, 60) is model
    assert table_of(model) is table and model.config.image_size == 60
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resize_model(model, 56)  # a multiple: no warning
    assert table_of(model) is table and model.config.image_size == 56


# ---------------------------------------------------------------- when to call it


def test_an_optimizer_built_before_does_not_train_the_new_table() -> None:
    def step(model: Any, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad()
        model(pixel_values=torch.randn(2, 3, 84, 84)).last_hidden_state.pow(2).mean().backward()
        optimizer.step()

    model = clip_vision()
    early = torch.optim.SGD(model.parameters(), lr=1.0)
    resize_model(model, 84)
    before = table_of(model).detach().clone()
    step(model, early)
    assert table_of(model).grad is not None  # the new table is used and has a gradient ...
    assert torch.equal(table_of(model).detach(), before)  # ... that the early optimizer never applies

    step(model, torch.optim.SGD(model.parameters(), lr=1.0))
    assert not torch.equal(table_of(model).detach(), before)


# ---------------------------------------------------------------- misuse: one line each, nothing changed


def refusals() -> list[tuple[str, Callable[[Any], Any], str]]:
    """(case, call on a tiny 56-px CLIPVisionModel, the start of the message)."""
    from transformers import BertConfig, BertModel

    class DistributedDataParallel(torch.nn.Module):  # as torch's: the model under `module`
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

    def two_towers(m: Any) -> Any:
        return resize_model(torch.nn.ModuleDict({"a": m, "b": clip_vision()}), 84)

    def bad_table(m: Any) -> Any:
        embeddings_of(m).position_embedding = torch.nn.Embedding(11, 32)
        return resize_model(m, 84)

    def on_meta(m: Any) -> Any:
        with torch.device("meta"):
            return resize_model(clip_vision(), 84)

    bert = BertConfig(vocab_size=10, **TINY)
    return [
        ("list", lambda m: resize_model(m, [224, 490]),  # type: ignore[arg-type]
         "res must be one size (a model runs at one), such as 490 or '448x672', not list [224, 490]; "
         "to write several sizes from one checkpoint, use resize()"),
        ("pair", lambda m: resize_model(m, (448, 672)),  # type: ignore[arg-type]
         "res=(448, 672) is ambiguous: give '448x672' (or Size(448, 672)) for height 448 and width 672"),
        ("float", lambda m: resize_model(m, 490.0),  # type: ignore[arg-type]
         "res must be a whole number of pixels, not float 490.0"),
        ("bool", lambda m: resize_model(m, True), "res must be a whole number of pixels, not True"),
        ("text", lambda m: resize_model(m, "big"), "res 'big' is not a size such as 490 or 448x672"),
        ("small", lambda m: resize_model(m, 5), "res=5 is smaller than one 14-px patch; use at least 14"),
        ("huge", lambda m: resize_model(m, 10**7), "res=10000000 means a 714285×714285 grid and a position table"),
        ("zero", lambda m: resize_model(m, 0), "res=0 is not a positive number of pixels"),
        ("non-square", lambda m: resize_model(m, "448x672"),
         "res='448x672' is not square, and a CLIP model cannot be: transformers' CLIP config states one "
         "image_size"),
        ("mode", lambda m: resize_model(m, 84, mode="cubic"),
         "mode must be one of bicubic, bilinear, nearest, area, not 'cubic'"),
        ("mode type", lambda m: resize_model(m, 84, mode=3),  # type: ignore[arg-type]
         "mode must be one of bicubic, bilinear, nearest, area, not 3"),
        ("antialias type", lambda m: resize_model(m, 84, antialias="yes"),  # type: ignore[arg-type]
         "antialias must be True or False, not 'yes'"),
        ("antialias mode", lambda m: resize_model(m, 84, mode="nearest", antialias=True),
         "antialias=True works only with mode bicubic or bilinear, not nearest"),
        ("device", lambda m: resize_model(m, 84, device="tpu"), "device must be one of auto, cpu, cuda, not 'tpu'"),
        ("device type", lambda m: resize_model(m, 84, device=torch.device("cpu")),  # type: ignore[arg-type]
         "device must be one of auto, cpu, cuda, not device(type='cpu')"),
        ("object", lambda m: resize_model(object(), 84),
         "model must be a loaded transformers model (a torch.nn.Module such as CLIPVisionModel), not object"),
        ("class", lambda m: resize_model(type(m), 84),
         "model is the class CLIPVisionModel, not a model: load one first, e.g. CLIPVisionModel.from_pretrained(...)"),
        ("linear", lambda m: resize_model(torch.nn.Linear(2, 2), 84),
         "model is a Linear with no vision tower resize_model knows; it resizes transformers' CLIP, SigLIP, "
         "DINOv2, DINOv2 with registers, ViT, InternViT models"),
        ("text model", lambda m: resize_model(BertModel(bert), 84),
         "model is a BertModel (model_type 'bert') with no vision tower resize_model knows"),
        ("two towers", two_towers, "model holds 2 vision towers (model.a, model.b); pass the one to resize"),
        ("wrapped", lambda m: resize_model(DistributedDataParallel(m), 84),
         "model is wrapped in DistributedDataParallel: call resize_model on the model before wrapping it"),
        ("not square", bad_table,
         "model's position table embeddings.position_embedding.weight has 11 rows: not 1 prefix "
         "row(s) plus a square grid, nor the 4×4 grid its config states"),
        ("meta", on_meta, "model.embeddings.position_embedding.weight is on the meta device"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", [c[0] for c in refusals()])
def test_every_misuse_is_one_usage_error_in_python_spelling(case: str) -> None:
    _, call, message = next(c for c in refusals() if c[0] == case)
    model = clip_vision()
    table, config = table_of(model), model.config.to_dict()
    with pytest.raises(XcrError) as e:
        call(model)
    assert isinstance(e.value, UsageError) and e.value.exit_code == 2
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)
    if case not in ("not square",):  # the model is as it was
        assert table_of(model) is table and model.config.to_dict() == config


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is usable here")
def test_cuda_without_a_gpu_is_refused_before_anything_changes() -> None:
    model = clip_vision()
    with pytest.raises(UsageError, match=r"^device='cuda': no CUDA GPU is usable here \(torch .*\); use device='cpu'"):
        resize_model(model, 84, device="cuda")
    assert table_of(model).shape == (17, 32)


def test_families_that_cannot_be_resized_say_why() -> None:
    from transformers import Siglip2VisionConfig, Siglip2VisionModel, ViTConfig, ViTForMaskedImageModeling

    with pytest.raises(UsageError, match=r"^model is a SigLIP2 NaFlex model, which resizes its position table"):
        resize_model(Siglip2VisionModel(Siglip2VisionConfig(**TINY)), 84)
    masked = ViTForMaskedImageModeling(ViTConfig(**TINY, image_size=64, patch_size=16, encoder_stride=16))
    with pytest.raises(UsageError, match=r"^res='48x80' is not square, and a ViT model cannot be: transformers' "
                       "ViTForMaskedImageModeling folds its output back into a square grid"):  # fmt: skip
        resize_model(masked, "48x80")
    resize_model(masked, 48)  # square: fine
    assert masked.config.image_size == 48


# ---------------------------------------------------------------- the package


def test_dir_lists_the_public_names_without_importing_torch() -> None:
    code = (
        "import sys, xcomposer_resize as x; names = dir(x); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(' '.join(names))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    import xcomposer_resize

    assert out == sorted(xcomposer_resize.__all__)
    assert {"resize", "resize_model", "inspect", "verify", "Result", "Size", "XcrError", "__version__"} <= set(out)
    for name in out:
        assert getattr(xcomposer_resize, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        xcomposer_resize.nothing  # type: ignore[attr-defined]  # noqa: B018
