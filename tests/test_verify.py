"""xcr verify: every check passes on a good output, and each fails, by name, on the damage it is for."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.builders import build
from tests.hubserver import HubServer
from tests.test_cli import one_error_line
from tests.test_convert import POS
from xcomposer_resize import resize
from xcomposer_resize.checkpoint.safetensors import read_header

CHECKS = ["files", "tensors", "table", "configs", "load"]


def hub_output(hub: HubServer, tmp_path: Path, **kwargs: Any) -> tuple[str, Path]:
    """An output made from a Hub repo (its record names the repo and commit)."""
    rid = f"tester/verify-{tmp_path.name[-10:]}"
    hub.add(rid, build(tmp_path / "src", fmt=kwargs.pop("fmt", "safetensors")))
    out = tmp_path / "out"
    resize(rid, kwargs.pop("res", 490), out, **kwargs)
    return rid, out


def checks(r: Any) -> dict[str, Any]:
    data = json.loads(r.out)
    return {c["check"]: c for c in data["checks"]}


def test_a_good_output_passes_every_check(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    rid, out = hub_output(hub, tmp_path, fmt="bin")
    r = xcr("verify", out, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["ok"] is True and data["source"] == rid and data["res"] == 490
    assert [c["check"] for c in data["checks"]] == CHECKS and all(c["ok"] is True for c in data["checks"])
    by = checks(r)
    assert "valid for the safetensors library and xcr's reader" in by["files"]["detail"]
    assert "byte-identical to the source" in by["tensors"]["detail"]
    assert "bit for bit" in by["table"]["detail"] and "24×24 table to 35×35" in by["table"]["detail"]
    assert "all say 490 px" in by["configs"]["detail"]
    assert "forward pass at 490×490 equals the source's, bit for bit" in by["load"]["detail"]
    human = xcr("verify", out)
    assert human.code == 0 and "all 5 checks that ran passed" in human.out and "✓" in human.out


@pytest.mark.parametrize("kwargs", [{"dtype": "bfloat16"}, {"vision_only": True}, {"fmt": "sharded", "res": 224}])
def test_output_forms_pass_too(xcr: Any, hub: HubServer, tmp_path: Path, kwargs: dict[str, Any]) -> None:
    _, out = hub_output(hub, tmp_path, **kwargs)
    r = xcr("verify", out, "--json")
    assert r.code == 0, r.out + r.err
    if kwargs.get("dtype") == "bfloat16":
        detail = checks(r)["load"]["detail"]
        assert "stored in bfloat16" in detail and "cosine ≥ 0.995" in detail


def test_a_local_source_must_be_named(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    resize(src, 224, tmp_path / "out")
    r = xcr("verify", tmp_path / "out")
    assert r.code == 2
    assert "was made from a local folder (clip-vit-tiny-patch14-336-0)" in one_error_line(r.err)
    assert "give --against PATH" in r.err
    r = xcr("verify", tmp_path / "out", "--against", src, "--json")
    assert r.code == 0, r.out


def damage(out: Path, what: str) -> None:
    if what in ("copied tensor", "table"):
        path = out / "model.safetensors"
        entries = read_header(path).tensors
        entry = next(t for t in entries if (t.name == POS) == (what == "table") and t.dtype == "F32")
        with open(path, "r+b") as f:
            f.seek(entry.start + 4)
            byte = f.read(1)
            f.seek(entry.start + 4)
            f.write(bytes([byte[0] ^ 0x40]))
    elif what == "config":
        config = json.loads((out / "config.json").read_text())
        config["vision_config"]["image_size"] = 336
        (out / "config.json").write_text(json.dumps(config))
    elif what == "processor":
        pre = json.loads((out / "preprocessor_config.json").read_text())
        pre["crop_size"] = 336
        (out / "preprocessor_config.json").write_text(json.dumps(pre))
    elif what == "header":
        (out / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes()[:100])


@pytest.mark.parametrize(
    ("what", "failed"),
    [
        ("copied tensor", "tensors"),
        ("table", "table"),
        ("config", "configs"),
        ("processor", "configs"),
        ("header", "files"),
    ],
)
def test_damage_is_found_and_named(xcr: Any, make_ckpt: Any, tmp_path: Path, what: str, failed: str) -> None:
    src = make_ckpt()
    out = tmp_path / "out"
    resize(src, 490, out)
    damage(out, what)
    r = xcr("verify", out, "--against", src, "--json")
    assert r.code == 1
    assert checks(r)[failed]["ok"] is False, checks(r)
    assert "failed" in one_error_line(r.err) and failed in r.err


def test_without_transformers_the_load_check_is_skipped(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_ckpt()
    resize(src, 490, tmp_path / "out")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers → ImportError
    r = xcr("verify", tmp_path / "out", "--against", src)
    assert r.code == 0, r.err
    assert "skipped: it needs transformers and pillow (pip install 'xcomposer-resize[verify]')" in r.out
    assert "all 4 checks that ran passed; skipped: load" in r.out


def test_drift_over_images(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    from PIL import Image

    src = make_ckpt()
    resize(src, 490, tmp_path / "out")
    images = tmp_path / "images"
    images.mkdir()
    for i, color in enumerate([(255, 0, 0), (0, 255, 0), (10, 20, 200)]):
        Image.new("RGB", (300 + 40 * i, 200), color).save(images / f"img{i}.png")
    (images / "notes.txt").write_text("not an image")
    r = xcr("verify", tmp_path / "out", "--against", src, "--images", images, "--json")
    assert r.code == 0, r.err
    drift = json.loads(r.out)["drift"]
    assert drift["images"] == 3 and -1 <= drift["min"] <= drift["mean"] <= 1
    assert [w["file"] for w in drift["worst"]] and all(w["file"].endswith(".png") for w in drift["worst"])
    human = xcr("verify", tmp_path / "out", "--against", src, "--images", images)
    assert "drift over 3 image(s): mean cosine" in human.out
    r = xcr("verify", tmp_path / "out", "--against", src, "--images", tmp_path / "nothing")
    assert r.code == 2 and "does not exist; give a folder of images" in one_error_line(r.err)
    (tmp_path / "out" / "preprocessor_config.json").unlink()  # an output without its image processor
    r = xcr("verify", tmp_path / "out", "--against", src, "--images", images)
    assert r.code == 2 and "runs each checkpoint's own image processor, and" in one_error_line(r.err)


def test_resize_verify(xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_ckpt()
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out", "--verify", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["verify"][0]["ok"] is True and data["verify"][0]["output"] == str(tmp_path / "out")

    from xcomposer_resize.commands import verify as verify_module
    from xcomposer_resize.commands.verify import Check

    failing = [("table", True, lambda _s: Check("table", False, "differs (for the test)"))]
    monkeypatch.setattr(verify_module, "CHECKS", [c for c in verify_module.CHECKS if c[0] != "table"] + failing)
    r = xcr("resize", "--model", src, "--res", 224, "--out", tmp_path / "bad", "--verify")
    assert r.code == 1
    line = one_error_line(r.err)
    assert f"{tmp_path / 'bad'} failed verification (table)" in line and "left in place" in line
    assert (tmp_path / "bad" / "model.safetensors").is_file()


def test_a_folder_that_is_not_an_xcr_output(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("verify", make_ckpt())
    assert r.code == 2 and "has no xcr record in its model card" in one_error_line(r.err)
    r = xcr("verify", tmp_path)
    assert r.code == 2 and "is not a checkpoint folder" in one_error_line(r.err)


def test_the_byte_checks_stream_in_chunks(make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xcomposer_resize.commands import verify as verify_module
    from xcomposer_resize.commands.verify import weights

    monkeypatch.setattr(weights, "CHUNK", 1024)  # every tensor in many pieces
    src = make_ckpt()
    resize(src, 490, tmp_path / "out", dtype="float16")
    found = verify_module.verify(tmp_path / "out", src)
    assert found.ok, found.checks


def test_the_python_name_is_the_function_whatever_was_imported_first() -> None:
    import xcomposer_resize.cli.app  # noqa: F401  (imports the modules the CLI uses)
    import xcomposer_resize.commands.verify  # noqa: F401
    from xcomposer_resize import inspect, resize, verify

    assert all(callable(f) and type(f).__name__ == "function" for f in (inspect, resize, verify))


def test_the_processor_resize_must_cover_its_crop(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    """size 336 with crop 490: transformers shrinks to 336 and pads to 490: a broken processor."""
    src = make_ckpt()
    resize(src, 490, tmp_path / "out")
    pre = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    pre["size"] = 336
    (tmp_path / "out" / "preprocessor_config.json").write_text(json.dumps(pre))
    r = xcr("verify", tmp_path / "out", "--against", src, "--json")
    assert r.code == 1
    assert "preprocessor_config.json has size 336, smaller than its 490 px crop" in checks(r)["configs"]["detail"]
    (tmp_path / "out" / "preprocessor_config.json").unlink()
    r = xcr("verify", tmp_path / "out", "--against", src, "--json")
    assert r.code == 1 and "preprocessor_config.json is missing (the source has it)" in checks(r)["configs"]["detail"]


def test_another_method_is_checked_by_its_table_not_a_forward_pass(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out", "--mode", "bilinear", "--verify",
            "--json")  # fmt: skip
    assert r.code == 0, r.err
    found = {c["check"]: c for c in json.loads(r.out)["verify"][0]["checks"]}
    assert "a fresh bilinear resample" in found["table"]["detail"]
    assert found["load"]["ok"] is True and "the forward pass is not compared" in found["load"]["detail"]


def test_an_output_is_not_checked_against_itself(xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: Any) -> None:
    src = make_ckpt()
    resize(src, 490, tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    r = xcr("verify", "out", "--against", "out")  # the value equals the argument's name: not "given twice"
    assert r.code == 2 and "is checked against itself" in one_error_line(r.err)
    for args in (["verify", ""], ["verify", "out", "--against", ""], ["verify", "out", "--images", ""]):
        r = xcr(*args)
        assert r.code == 2 and "is empty" in one_error_line(r.err), args
    r = xcr("verify", tmp_path / "nowhere")
    assert r.code == 2 and "does not exist" in one_error_line(r.err)


def test_ctrl_c_while_verifying_says_the_output_is_complete(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xcomposer_resize.commands import verify as verification

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(verification, "verify", interrupted)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "out", "--verify")
    assert r.code == 130
    assert one_error_line(r.err) == (
        f"xcr: error: interrupted; {tmp_path / 'out'} is complete; it was not verified (interrupted)"
    )
    assert (tmp_path / "out" / "model.safetensors").is_file()
