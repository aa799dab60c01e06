"""The output is usable as its model card says: transformers 5 processor files, the shipped demo,
and a model card that inherits the source's metadata. transformers and huggingface_hub are the judges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.builders import build_saved
from tests.hubserver import HubServer
from tests.test_convert import image_features, load
from xcomposer_resize import XcrError, resize
from xcomposer_resize.families.transformers import rewrite_processor
from xcomposer_resize.size import Size

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "clip-vit-tiny-patch14-336"


def pixels_from_processors(folder: Path) -> set[tuple[int, int]]:
    """The pixel sizes every way transformers reads this folder's processor makes of a photo."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoProcessor, CLIPImageProcessor

    image = Image.new("RGB", (800, 600), (10, 200, 30))
    sizes = set()
    for loader in (AutoImageProcessor, AutoProcessor, CLIPImageProcessor):
        pixels = loader.from_pretrained(folder)(images=image, return_tensors="pt")["pixel_values"]
        sizes.add(tuple(pixels.shape[-2:]))
    return sizes


@pytest.mark.parametrize("form", ["v5", "both"])
@pytest.mark.parametrize("kind", ["full", "vision"])
def test_checkpoints_saved_by_transformers_5_get_processors_of_the_new_size(
    tmp_path: Path, form: str, kind: str
) -> None:
    src = build_saved(tmp_path / "src", kind=kind, processor_form=form)
    assert pixels_from_processors(src) == {(336, 336)}, "the source's processor makes 336-px images"
    out = tmp_path / "out"
    resize(src, 490, out)
    assert pixels_from_processors(out) == {(490, 490)}
    nested = json.loads((out / "processor_config.json").read_text())["image_processor"]
    assert nested["size"] == {"shortest_edge": 490} and nested["crop_size"] == {"height": 490, "width": 490}
    cls = "CLIPModel" if kind == "full" else "CLIPVisionModel"
    pixels = torch.randn(1, 3, 490, 490)
    want = image_features(load(src, cls), pixels, interpolate_pos_encoding=True)
    assert torch.equal(image_features(load(out, cls), pixels), want)


@pytest.mark.parametrize(
    ("data", "want"),
    [
        ({"size": 336, "crop_size": 336}, {"size": 224, "crop_size": 224}),
        ({"size": {"shortest_edge": 336}}, {"size": {"shortest_edge": 224}}),
        ({"size": {"height": 336, "width": 336}}, {"size": {"height": 224, "width": 224}}),
        ({"size": {"longest_edge": 336}}, {"size": {"longest_edge": 224}}),
        ({"size": [336, 336]}, {"size": [224, 224]}),
        ({"size": None, "crop_size": 336}, {"size": None, "crop_size": 224}),
        (
            {"image_processor": {"size": {"shortest_edge": 336}}, "video_processor": {"size": 336}, "x": {"size": 1}},
            {"image_processor": {"size": {"shortest_edge": 224}}, "video_processor": {"size": 224}, "x": {"size": 1}},
        ),
    ],
)
def test_every_size_form_is_rewritten_in_its_own_form(data: dict[str, Any], want: dict[str, Any]) -> None:
    assert rewrite_processor(data, Size.square(224), "processor_config.json") == want


@pytest.mark.parametrize(
    ("data", "want"),
    [
        ({"size": {"height": 224, "width": 224}}, {"size": {"height": 448, "width": 672}}),
        ({"size": [224, 224], "crop_size": {"height": 224, "width": 224}},
         {"size": [448, 672], "crop_size": {"height": 448, "width": 672}}),
        # resize then crop (DINOv2-like): the resize keeps its relation to its own crop, side by side
        ({"size": {"height": 256, "width": 256}, "crop_size": {"height": 224, "width": 224}},
         {"size": {"height": 512, "width": 768}, "crop_size": {"height": 448, "width": 672}}),
        # one number read as a square (a crop; ViT's size) becomes two sides
        ({"size": 224, "image_processor_type": "ViTImageProcessor"},
         {"size": {"height": 448, "width": 672}, "image_processor_type": "ViTImageProcessor"}),
        ({"size": {"height": 256, "width": 256}, "crop_size": 224},
         {"size": {"height": 512, "width": 768}, "crop_size": {"height": 448, "width": 672}}),
    ],
)  # fmt: skip
def test_a_non_square_size_is_stated_side_by_side(data: dict[str, Any], want: dict[str, Any]) -> None:
    assert rewrite_processor(data, Size(448, 672), "preprocessor_config.json") == want


@pytest.mark.parametrize("value", [224, {"shortest_edge": 224}, {"longest_edge": 224}])
def test_one_number_cannot_state_a_non_square_size(value: Any) -> None:
    with pytest.raises(XcrError, match="one number, which cannot state 448×672 px"):
        rewrite_processor({"size": value}, Size(448, 672), "preprocessor_config.json")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"size": True}, "has size True, which is not a size"),
        ({"size": "336"}, 'has size "336"; expected an int'),
        ({"image_processor": {"crop_size": {"w": 336}}}, 'has image_processor.crop_size {"w": 336}'),
        ({"size": {"shortest_edge": 336, "longest_edge": 1333}}, "set that file's sizes by hand"),
    ],
)
def test_a_size_form_xcr_cannot_rewrite_is_refused_before_writing(
    make_ckpt: Any, tmp_path: Path, data: dict[str, Any], fragment: str
) -> None:
    src = make_ckpt()
    (src / "processor_config.json").write_text(json.dumps(data))
    with pytest.raises(XcrError) as e:
        resize(src, 490, tmp_path / "out")
    assert e.value.exit_code == 2 and fragment in str(e.value) and "processor_config.json" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_the_shipped_demo_and_its_output_load_in_transformers(tmp_path: Path) -> None:
    from transformers import CLIPModel, CLIPVisionModel

    from tests.check_demo import check

    for cls in (CLIPModel, CLIPVisionModel):
        cls.from_pretrained(DEMO)  # the source itself loads: the first thing a new user tries
    out = tmp_path / "demo-490"
    resize(DEMO, 490, out)
    assert "image features equal the source's" in check(DEMO, out)


def card_of(folder: Path) -> Any:
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


SOURCE_CARD = """---
license: mit
language:
- en
tags:
- vision
- my-tag
datasets:
- some/dataset
base_model: someone/older-model
model-index:
- name: clip
  results: []
widget:
- src: https://example.com/cat.jpg
---

# Model Card: CLIP

Disclaimer: the original text, kept for its license notice.
"""


def test_the_model_card_inherits_what_still_holds(hub: HubServer, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(extra_files={"README.md": SOURCE_CARD.encode()})
    rid = f"tester/card-{tmp_path.name[-12:]}"
    sha = hub.add(rid, src)
    resize(rid, 490, tmp_path / "out")
    card = card_of(tmp_path / "out")
    data = card.data.to_dict()
    assert data["license"] == "mit" and data["language"] == ["en"] and data["datasets"] == ["some/dataset"]
    assert data["base_model"] == rid and data["base_model_relation"] == "finetune"
    assert "model-index" not in data, "the source's evaluation results do not describe this checkpoint"
    assert data["widget"] == [{"src": "https://example.com/cat.jpg"}]
    assert data["tags"][:2] == ["vision", "my-tag"] and "xcomposer-resize" in data["tags"] and "490px" in data["tags"]
    assert data["tags"].count("vision") == 1
    assert f"(https://huggingface.co/{rid})" in card.text and sha in card.text
    assert "# Model Card: CLIP" in card.text and "kept for its license notice" in card.text


def test_a_local_source_card_keeps_its_license_without_a_base_model(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(extra_files={"README.md": SOURCE_CARD.encode()})
    resize(src, 224, tmp_path / "out", mode="nearest")
    card = card_of(tmp_path / "out")
    assert card.data.license == "mit" and card.data.base_model is None
    assert "| method | nearest; class token copied" in card.text, "no align_corners for a mode without it"


@pytest.mark.parametrize(
    "text", ["no front matter at all\n", "---\n: [unclosed\n---\nbody text\n", "---\nlicense: mit\n"]
)
def test_a_card_without_usable_metadata_still_gives_a_valid_card(make_ckpt: Any, tmp_path: Path, text: str) -> None:
    src = make_ckpt(extra_files={"README.md": text.encode()})
    resize(src, 224, tmp_path / "out")
    card = card_of(tmp_path / "out")
    assert card.data.library_name == "transformers" and "xcomposer-resize" in card.data.tags
    assert text.strip().splitlines()[-1] in card.text


def test_a_vision_only_card_names_the_feature_extraction_task(make_ckpt: Any, tmp_path: Path) -> None:
    resize(make_ckpt(kind="vision"), 224, tmp_path / "out")
    assert card_of(tmp_path / "out").data.pipeline_tag == "image-feature-extraction"
