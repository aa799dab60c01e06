"""xcr inspect: what xcr sees, without converting, and for a Hub repo without downloading weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.builders import build
from tests.hubserver import HubServer
from tests.test_cli import one_error_line


def test_inspect_a_folder(xcr: Any, make_ckpt: Any) -> None:
    src = make_ckpt(fmt="sharded")
    r = xcr("inspect", src, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["grid"] == [24, 24] and data["patch_size"] == 14 and data["image_size"] == 336
    assert data["prefix_tokens"] == 1 and data["family"] == "CLIP" and data["stated"] is True
    table = data["table"]
    assert table == {"name": "vision_model.embeddings.position_embedding.weight", "shape": [577, 32],
                     "dtype": "F32", "known_from": "weights"}  # fmt: skip
    assert data["position_ids"] == "vision_model.embeddings.position_ids"
    from tests.test_convert import tensors

    every = tensors(src)
    assert data["parameters"] == sum(t.numel() for t in every.values() if t.dtype.is_floating_point)
    assert data["dtypes"] == {"F32": sum(t.numel() for t in every.values() if t.dtype.is_floating_point),
                              "I64": sum(t.numel() for t in every.values() if not t.dtype.is_floating_point)}  # fmt: skip
    assert data["sharded"] is True and data["weights_format"] == "safetensors" and data["weights_local"] is True
    assert [w["name"] for w in data["weight_files"]] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert data["accepted_res"] == {
        "multiple_of": 14,
        "min": 14,
        "max": 57330,
        "grid_multiple_of": 1,
        "non_square": False,
        "square_only": "transformers' CLIP config states one image_size and CLIPVisionEmbeddings builds a square "
        "grid from it",
    }
    assert data["processors"] == {"preprocessor_config.json": {"size": 336, "crop_size": 336}}
    assert data["download"] is None
    human = xcr("inspect", src)
    assert human.code == 0
    for fragment in (
        "24×24 grid",
        "F32 [577, 32]",
        "14 to 57330 (a square's side); multiples of 14 fit the patches exactly",
        "sharded, on this machine",
    ):
        assert fragment in human.out, fragment


def test_inspect_a_hub_safetensors_repo_reads_headers_only(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    src = build(tmp_path / "src", fmt="sharded")
    (src / "tf_model.h5").write_bytes(b"HDF" * 1000)
    rid = f"tester/inspect-{tmp_path.name[-8:]}"
    sha = hub.add(rid, src)
    r = xcr("inspect", rid, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["revision"] == sha and data["weights_local"] is False
    assert data["table"]["shape"] == [577, 32] and data["table"]["known_from"] == "weights"
    weights = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert not [f for f in hub.downloaded(rid) if f in weights], "no weights were downloaded, only their headers"
    download = data["download"]
    assert set(weights) <= set(download["files"]) and "tf_model.h5" not in download["files"]
    sizes = {f["name"]: f["bytes"] for f in data["files"]}
    assert download["bytes"] == sum(sizes[f] for f in download["files"])


def test_inspect_a_hub_bin_repo_says_the_table_comes_from_the_config(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    rid = f"tester/inspectbin-{tmp_path.name[-8:]}"
    hub.add(rid, build(tmp_path / "src", fmt="bin"))
    r = xcr("inspect", rid, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["table"]["known_from"] == "config" and data["table"]["shape"] == [577, 32]
    assert data["parameters"] is None and "pytorch_model.bin" not in hub.downloaded(rid)
    assert "pytorch_model.bin" in data["download"]["files"]
    human = xcr("inspect", rid)
    assert "implied by config.json" in human.out and "not downloaded" in human.out


@pytest.mark.parametrize("target", ["nothing-here", "bad id!"])
def test_inspect_bad_input(xcr: Any, tmp_path: Path, target: str) -> None:
    path = str(tmp_path / target) if target == "nothing-here" else target
    r = xcr("inspect", path)
    assert r.code == 2 and one_error_line(r.err)


def test_inspect_says_what_a_conversion_leaves_out(xcr: Any, make_ckpt: Any) -> None:
    src = make_ckpt(extra_files={"tf_model.h5": b"HDF", ".env": b"x"})
    data = json.loads(xcr("inspect", src, "--json").out)
    roles = {f["name"]: f["role"] for f in data["files"]}
    assert roles["model.safetensors"] == "weights" and roles["config.json"] == "rewritten"
    assert roles["vocab.json"] == "carried" and roles["tf_model.h5"] == "not carried" and roles[".env"] == "not carried"
    assert "not carried" in xcr("inspect", src).out


def test_inspect_an_empty_name(xcr: Any) -> None:
    r = xcr("inspect", "")
    assert r.code == 2 and "give a checkpoint folder or a Hub repo id" in one_error_line(r.err)


def test_inspect_names_the_family_as_the_flag_spells_it(xcr: Any, tmp_path: Path) -> None:
    from tests.family_builders import build_family

    src = build_family(tmp_path / "src", "dinov2-registers")
    data = json.loads(xcr("inspect", src, "--json").out)
    assert data["family"] == "DINOv2 with registers" and data["family_flag"] == "dinov2-registers"
    assert "--family dinov2-registers" in xcr("inspect", src).out
    assert data["problems"] == []


@pytest.mark.parametrize("omit", [False, True])
def test_inspect_says_when_the_config_and_the_table_disagree(xcr: Any, tmp_path: Path, omit: bool) -> None:
    """A stated size, or transformers' default for a size left out (SigLIP: 224), that the table contradicts."""
    from tests.family_builders import build_family

    src = build_family(tmp_path / "src", "siglip", omit_image_size=omit)
    if not omit:
        config = json.loads((src / "config.json").read_text())
        config["vision_config"]["image_size"] = 224
        (src / "config.json").write_text(json.dumps(config))
    r = xcr("inspect", src, "--json")
    assert r.code == 0, r.err
    (problem,) = json.loads(r.out)["problems"]
    said = "does not state the vision image_size, so transformers assumes 224 px" if omit else "says 224 px"
    assert f"config.json {said}" in problem and "holds a 27×27 grid" in problem
    assert problem.endswith("xcr resize refuses it until they agree")
    human = " ".join(xcr("inspect", src).out.split())
    assert "problem" in human and "holds a 27×27 grid" in human
    assert xcr("resize", "--model", src, "--res", 448, "--out", tmp_path / "out").code == 2
