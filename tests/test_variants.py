"""Variants for pipelines: several resolutions per run, presets, --dtype, --vision-only, --fsync,
up-to-date re-runs, `make variants`, and subfolders. transformers (and torch's own casts) are the oracle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import snapshot
from tests.test_cli import one_error_line
from tests.test_convert import IDS, POS, image_features, load, tensors
from tests.test_interpolate import transformers_table
from xcomposer_resize import XcrError, resize

REPO = Path(__file__).resolve().parents[1]


def files_state(folder: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file: unchanged means not rewritten."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# ------------------------------------------------------------------ several resolutions


def test_several_resolutions_in_one_run(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="bin")
    r = xcr(
        "resize", "--model", src, "--res", 224, "--res", 490, "--res", 560, "--out", tmp_path / "clip-{res}", "--json"
    )
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert [(o["path"], o["res"], o["grid"]) for o in data["outputs"]] == [
        (str(tmp_path / f"clip-{res}"), res, [res // 14] * 2) for res in (224, 490, 560)
    ]
    old = tensors(src)
    for res in (224, 490, 560):
        new = tensors(tmp_path / f"clip-{res}")
        assert torch.equal(new[POS], transformers_table(old[POS], res // 14))
        config = json.loads((tmp_path / f"clip-{res}" / "config.json").read_text())
        assert config["vision_config"]["image_size"] == res


COUNT_WORKERS = """
import json, sys
from xcomposer_resize import resize
from xcomposer_resize.conversion import worker as worker
started = []
real = worker.Worker.start.__func__
worker.Worker.start = classmethod(lambda cls: started.append(1) or real(cls))
resize(sys.argv[1], [224, 490, 560], sys.argv[2])
print(json.dumps({"workers": len(started), "torch_imported": "torch" in sys.modules}))
"""


def test_several_resolutions_share_one_torch_worker(make_ckpt: Any, tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-c", COUNT_WORKERS, str(make_ckpt()), str(tmp_path / "o-{res}")],
                       capture_output=True, text=True, timeout=180)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"workers": 1, "torch_imported": False}


def test_several_resolutions_without_out_get_default_names(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_ckpt("clip-vit-tiny-patch14-336")
    monkeypatch.chdir(tmp_path)
    r = xcr("resize", "--model", src, "--res", 224, "--res", 490, "--quiet")
    assert r.code == 0, r.err
    assert (tmp_path / "clip-vit-tiny-patch14-224" / "model.safetensors").is_file()
    assert (tmp_path / "clip-vit-tiny-patch14-490" / "model.safetensors").is_file()


def test_two_resolutions_into_one_folder_are_refused(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", 224, "--res", 490, "--out", tmp_path / "a-{res}/../same")
    assert r.code == 2
    assert "--res 224 and --res 490 would both be written to" in one_error_line(r.err)
    r = xcr("resize", "--model", make_ckpt(), "--res", 224, "--res", 224, "--out", tmp_path / "{res}")
    assert r.code == 2 and "res lists 224 twice" in one_error_line(r.err).replace("--", "")


# ------------------------------------------------------------------ presets


def test_presets_list(xcr: Any) -> None:
    r = xcr("presets", "--json")
    assert r.code == 0
    table = {p["name"]: p for p in json.loads(r.out)}
    assert {k: (v["res"], v["grid"]) for k, v in table.items()} == {
        "internlm-xcomposer2-7b": (224, [16, 16]),
        "internlm-xcomposer2-vl-7b": (490, [35, 35]),
        "internlm-xcomposer2-4khd-7b": (336, [24, 24]),
        "internlm-xcomposer2d5-7b": (560, [40, 40]),
        "internlm-xcomposer2d5-ol-7b": (560, [40, 40]),
    }  # grid as resize --json and inspect --json give it: [rows, columns]
    assert all(p["source"] == "openai/clip-vit-large-patch14-336" and p["note"] for p in table.values())
    human = xcr("presets")
    assert human.code == 0 and all(name in human.out for name in table) and "35×35" in human.out


def test_a_preset_converts_to_its_resolution(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr(
        "resize", "--model", make_ckpt(), "--preset", "internlm-xcomposer2-vl-7b", "--out", tmp_path / "out", "--json"
    )
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["outputs"][0]["res"] == 490 and data["outputs"][0]["grid"] == [35, 35]
    assert any("XComposer2 VL 7B" in n for n in data["notes"])


def test_the_4khd_preset_needs_no_conversion(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--preset", "internlm-xcomposer2-4khd-7b", "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert "no conversion is needed" in r.err and "nothing to write" in r.out
    assert not (tmp_path / "out").exists()
    r = xcr("resize", "--model", make_ckpt(), "--preset", "internlm-xcomposer2-4khd-7b", "--json")
    assert r.code == 0 and json.loads(r.out)["outputs"] == []


def test_the_2d5_preset_says_its_tower_is_its_own(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--preset", "internlm-xcomposer2d5-7b", "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert "own CLIP-L/14 already at 560 px" in r.err and "for experiments" in r.err
    assert json.loads((tmp_path / "out" / "config.json").read_text())["vision_config"]["image_size"] == 560


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "nope"], "--preset nope is not a preset; choose one of internlm-xcomposer2-7b,"),
        (["--preset", "internlm-xcomposer2-7b", "--res", "490"], "give --res or --preset, not both"),
    ],
)
def test_bad_presets(xcr: Any, make_ckpt: Any, args: list[str], message: str) -> None:
    r = xcr("resize", "--model", make_ckpt(), *args)
    assert r.code == 2 and message in one_error_line(r.err)


# ------------------------------------------------------------------ --dtype


@pytest.mark.parametrize("target", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("stored", [torch.float32, torch.bfloat16])
def test_dtype_casts_every_floating_tensor_and_resamples_in_float32(
    make_ckpt: Any, tmp_path: Path, target: str, stored: torch.dtype
) -> None:
    src = make_ckpt(fmt="sharded", dtype=stored)
    resize(src, 490, tmp_path / "out", dtype=target)
    want = getattr(torch, target)
    old, new = tensors(src), tensors(tmp_path / "out")
    assert set(old) == set(new)
    for name, t in old.items():
        if name in (POS, IDS):
            continue
        if t.is_floating_point():
            assert new[name].dtype == want and torch.equal(new[name], t.to(want)), name
        else:
            assert new[name].dtype == t.dtype and torch.equal(new[name], t), name
    # computed in float32 from the stored values and cast once: never rounded to the stored dtype on the way
    assert torch.equal(new[POS], transformers_table(old[POS].float(), 35).to(want))
    assert new[IDS].dtype == torch.int64
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["torch_dtype"] == target
    if target != "float32":
        model = load(tmp_path / "out").to(torch.float32)
        assert model.vision_model.embeddings.position_embedding.weight.shape[0] == 1 + 35 * 35


def test_a_bin_source_is_cast_too(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="bin")
    resize(src, 224, tmp_path / "out", dtype="bfloat16")
    old, new = tensors(src), tensors(tmp_path / "out")
    assert all(torch.equal(new[k], v.to(torch.bfloat16)) for k, v in old.items() if v.is_floating_point() and k != POS)


def test_a_cast_is_streamed_in_chunks(make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xcomposer_resize.checkpoint import safetensors as safetensors_io

    monkeypatch.setattr(safetensors_io, "CAST_CHUNK", 4096)  # many chunks per tensor
    src = make_ckpt()
    resize(src, 490, tmp_path / "out", dtype="float16")
    old, new = tensors(src), tensors(tmp_path / "out")
    assert all(torch.equal(new[k], v.to(torch.float16)) for k, v in old.items() if v.is_floating_point() and k != POS)


# ------------------------------------------------------------------ --vision-only


@pytest.mark.parametrize("fmt", ["safetensors", "bin", "sharded"])
def test_vision_only_loads_as_clip_vision_model(make_ckpt: Any, tmp_path: Path, fmt: str) -> None:
    src = make_ckpt(fmt=fmt)
    out = tmp_path / "out"
    resize(src, 490, out, vision_only=True)
    names = set(tensors(out))
    assert names and all(n.startswith("vision_model.") for n in names), "the source's naming, vision only"
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    assert not (out / "model.safetensors.index.json").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "clip_vision_model" and config["architectures"] == ["CLIPVisionModel"]
    assert config["image_size"] == 490 and "text_config" not in config
    pixels = torch.randn(1, 3, 490, 490)
    got = image_features(load(out, "CLIPVisionModel"), pixels)
    from transformers import CLIPVisionModel

    source_tower = CLIPVisionModel.from_pretrained(src).eval()
    with torch.no_grad():
        for p in list(source_tower.parameters()) + list(source_tower.buffers()):
            p.data = p.data.clone()
        want = source_tower(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
    assert torch.equal(got, want)


def test_vision_only_with_projection(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    out = tmp_path / "out"
    resize(src, 224, out, vision_only=True, with_projection=True)
    assert "visual_projection.weight" in tensors(out)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["CLIPVisionModelWithProjection"] and config["projection_dim"] == 8
    pixels = torch.randn(1, 3, 224, 224)
    model = load(out, "CLIPVisionModelWithProjection")
    with torch.no_grad():
        got = model(pixel_values=pixels).image_embeds
    full = load(src)
    with torch.no_grad():
        want = full.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True)
    want = want if isinstance(want, torch.Tensor) else want.pooler_output
    assert torch.equal(got, want)


def test_vision_only_and_dtype_together(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(fmt="sharded")
    resize(src, 490, tmp_path / "out", vision_only=True, dtype="bfloat16")
    new = tensors(tmp_path / "out")
    assert all(t.dtype in (torch.bfloat16, torch.int64) for t in new.values())
    assert json.loads((tmp_path / "out" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    load(tmp_path / "out", "CLIPVisionModel")


def test_with_projection_needs_vision_only(xcr: Any, make_ckpt: Any) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--with-projection")
    assert r.code == 2 and "--with-projection applies only with --vision-only" in one_error_line(r.err)


# ------------------------------------------------------------------ --fsync


def test_fsync_flushes_every_file_and_folder(make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xcomposer_resize.conversion import land as output

    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(output.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    resize(make_ckpt(), 490, tmp_path / "plain")
    assert synced == []
    resize(make_ckpt(), 490, tmp_path / "synced", fsync=True)
    files = [p for p in (tmp_path / "synced").rglob("*")]
    assert len(synced) >= len(files) + 2, "every file, the output folder, and its parent after the rename"
    assert snapshot(tmp_path / "plain").keys() == snapshot(tmp_path / "synced").keys()


# ------------------------------------------------------------------ up-to-date re-runs


def test_a_rerun_is_up_to_date_and_rewrites_nothing(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 490, "--out", out, "--quiet").code == 0
    before = files_state(out)
    r = xcr("resize", "--model", src, "--res", 490, "--out", out, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["outputs"][0]["up_to_date"] is True and data["bytes_written"] == 0
    assert files_state(out) == before
    human = xcr("resize", "--model", src, "--res", 490, "--out", out)
    assert human.code == 0 and "(up to date)" in human.out


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("mode", "was made with mode 'bicubic', not 'bilinear'"),
        ("dtype", "was made with dtype 'keep', not 'float16'"),
        ("source", "was made from the files of a folder clip-vit-tiny-patch14-336-0 as they were then"),
        ("truncate", "is incomplete or damaged: model.safetensors has"),
        ("table", "is incomplete or damaged: vision_model.embeddings.position_embedding.weight does not read back"),
        ("missing", "is incomplete or damaged: vocab.json is missing"),
        ("copied", "is incomplete or damaged: model.safetensors was changed since it was written (its bytes of "),
        ("last", "is incomplete or damaged: model.safetensors was changed since it was written (its bytes of "),
    ],
)
def test_what_is_not_up_to_date_says_why_and_needs_force(
    xcr: Any, make_ckpt: Any, tmp_path: Path, change: str, fragment: str
) -> None:
    src = make_ckpt()
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 490, "--out", out, "--quiet").code == 0
    extra: list[str] = []
    if change == "mode":
        extra = ["--mode", "bilinear"]
    elif change == "dtype":
        extra = ["--dtype", "float16"]
    elif change == "source":
        os.utime(src / "model.safetensors", ns=(1, 1))
    elif change == "truncate":
        with open(out / "model.safetensors", "r+b") as f:
            f.truncate(1000)
    elif change == "table":
        from xcomposer_resize.checkpoint.safetensors import read_header

        entry = next(t for t in read_header(out / "model.safetensors").tensors if t.name == POS)
        with open(out / "model.safetensors", "r+b") as f:
            f.seek(entry.start)
            byte = f.read(1)
            f.seek(entry.start)
            f.write(bytes([byte[0] ^ 1]))
    elif change == "missing":
        (out / "vocab.json").unlink()
    elif change in ("copied", "last"):  # one flipped bit in a copied tensor, the file's size and times kept
        from xcomposer_resize.checkpoint.safetensors import read_header

        entries = [t for t in read_header(out / "model.safetensors").tensors if t.name not in (POS, IDS) and t.nbytes]
        at = entries[len(entries) // 2].start if change == "copied" else entries[-1].end - 1
        st = (out / "model.safetensors").stat()
        with open(out / "model.safetensors", "r+b") as f:
            f.seek(at)
            byte = f.read(1)
            f.seek(at)
            f.write(bytes([byte[0] ^ 1]))
        os.utime(out / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns))
    r = xcr("resize", "--model", src, "--res", 490, "--out", out, *extra)
    assert r.code == 2
    line = one_error_line(r.err)
    assert (
        "holds an earlier xcr output that" in line and fragment in line and line.endswith("pass --force to replace it")
    )
    r = xcr("resize", "--model", src, "--res", 490, "--out", out, *extra, "--force", "--quiet")
    assert r.code == 0, r.err
    assert xcr("resize", "--model", src, "--res", 490, "--out", out, *extra, "--json").code == 0


def test_an_up_to_date_hub_output_follows_the_branch(xcr: Any, hub: Any, tmp_path: Path) -> None:
    from tests.builders import build

    rid = f"tester/uptodate-{tmp_path.name[-10:]}"
    hub.add(rid, build(tmp_path / "v1", seed=1))
    out = tmp_path / "out"
    assert xcr("resize", "--model", rid, "--res", 490, "--out", out, "--quiet").code == 0
    r = xcr("resize", "--model", rid, "--res", 490, "--out", out, "--json")
    assert r.code == 0 and json.loads(r.out)["outputs"][0]["up_to_date"] is True
    hub.add(rid, build(tmp_path / "v2", seed=2))  # main moves on
    r = xcr("resize", "--model", rid, "--res", 490, "--out", out)
    assert r.code == 2 and f"was made from another commit of {rid}" in one_error_line(r.err)


def test_make_variants_twice_rewrites_nothing(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt("clip-vit-tiny-patch14-336")
    out = tmp_path / "variants"
    args = ["make", "-s", "-C", str(REPO), "-j3", "variants", f"VARIANTS_SRC={src}", f"VARIANTS_OUT={out}",
            "XCR_FLAGS=--quiet", f"BIN={Path(sys.executable).parent}", "VENV=/nonexistent-never-built"]  # fmt: skip
    env = {**os.environ, "MAKEFLAGS": ""}
    first = subprocess.run(
        [*args, "-o", "/nonexistent-never-built/.runtime"], capture_output=True, text=True, env=env, timeout=300
    )
    assert first.returncode == 0, first.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["internlm-xcomposer2-7b", "internlm-xcomposer2-vl-7b", "internlm-xcomposer2d5-7b"]
    before = {n: files_state(out / n) for n in names}
    second = subprocess.run(
        [*args, "-o", "/nonexistent-never-built/.runtime"], capture_output=True, text=True, env=env, timeout=300
    )
    assert second.returncode == 0, second.stderr
    assert {n: files_state(out / n) for n in names} == before


# ------------------------------------------------------------------ subfolders


def test_subfolders_are_carried_but_not_other_weight_formats(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    (src / "tokenizer").mkdir()
    (src / "tokenizer" / "vocab.json").write_text('{"a": 0}')
    (src / "image").mkdir()
    (src / "image" / "preprocessor_config.json").write_text(
        json.dumps({"size": 336, "crop_size": {"height": 336, "width": 336}})
    )
    (src / "onnx").mkdir()
    (src / "onnx" / "model.onnx").write_bytes(b"onnx")
    (src / "onnx" / "config.json").write_text("{}")
    (src / ".cache").mkdir()
    (src / ".cache" / "x.lock").write_text("")
    (src / "tokenizer" / "extra.bin").write_bytes(b"weights")
    resize(src, 490, tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "tokenizer" / "vocab.json").read_text() == '{"a": 0}'
    assert json.loads((out / "image" / "preprocessor_config.json").read_text()) == {
        "size": 490, "crop_size": {"height": 490, "width": 490}
    }  # fmt: skip
    assert not (out / "onnx").exists() and not (out / ".cache").exists()
    assert not (out / "tokenizer" / "extra.bin").exists()
    r = resize(src, 490, tmp_path / "out")  # the record covers subfolders: still up to date
    assert r.outputs[0].up_to_date
    resize(src, 224, tmp_path / "out", force=True)  # and --force may replace an output with subfolders


def test_hub_subfolders_are_downloaded_by_commit(hub: Any, tmp_path: Path) -> None:
    from tests.builders import build

    src = build(tmp_path / "src")
    (src / "tokenizer").mkdir()
    (src / "tokenizer" / "vocab.json").write_text('{"a": 0}')
    (src / "onnx").mkdir()
    (src / "onnx" / "model.onnx").write_bytes(b"onnx" * 100)
    (src / "onnx" / "config.json").write_text("{}")
    rid = f"tester/subfolders-{tmp_path.name[-10:]}"
    sha = hub.add(rid, src)
    resize(rid, 490, tmp_path / "out")
    got = hub.downloaded(rid)
    assert "tokenizer/vocab.json" in got and not [g for g in got if g.startswith("onnx/")]
    assert (tmp_path / "out" / "tokenizer" / "vocab.json").is_file()
    resolved = [r.path for r in hub.requests if r.path.startswith(f"/{rid}/resolve/") and r.method == "GET"]
    assert all(f"/resolve/{sha}/" in p for p in resolved if not p.endswith("/config.json"))


def test_a_branch_that_moves_mid_run_is_caught(hub: Any, tmp_path: Path) -> None:
    from tests.builders import build

    rid = f"tester/moving-{tmp_path.name[-10:]}"
    hub.add(rid, build(tmp_path / "v1", seed=1))
    moved = []

    def move(request: Any) -> None:
        if request.path == f"/{rid}/resolve/main/config.json" and not moved:  # after the listing
            moved.append(hub.add(rid, build(tmp_path / "v2", seed=2)))

    hub.hooks.append(move)
    try:
        with pytest.raises(XcrError) as e:
            resize(rid, 490, tmp_path / "out")
    finally:
        hub.hooks.remove(move)
    assert "moved to another commit while xcr was reading it" in str(e.value) and "run again" in str(e.value)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ what a stranger hit (issue 10)


def test_force_spares_any_file_a_user_added_to_an_earlier_output(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 490, "--out", out, "--quiet").code == 0
    for name in ("train.py", "eval_results.json", "notes.md", "readme.txt"):  # checkpoint-like names
        (out / name).write_text("mine")
    before = snapshot(out)
    r = xcr("resize", "--model", src, "--res", 224, "--out", out, "--force")
    assert r.code == 2
    line = one_error_line(r.err)
    assert "is an earlier xcr output but also holds 4 entries (eval_results.json, notes.md, readme.txt, …)" in line
    assert snapshot(out) == before


def test_with_projection_needs_a_projection_in_the_source(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", make_ckpt(kind="vision"), "--res", 224, "--out", tmp_path / "out",
            "--vision-only", "--with-projection")  # fmt: skip
    assert r.code == 2
    assert "the source has no visual_projection to keep; leave --with-projection out" in one_error_line(r.err)
    assert not (tmp_path / "out").exists()


def test_the_4khd_preset_looks_at_the_source(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", tmp_path / "nothing", "--preset", "internlm-xcomposer2-4khd-7b")
    assert r.code == 2 and "does not exist" in one_error_line(r.err)
    small = make_ckpt(image_size=224)
    r = xcr("resize", "--model", small, "--preset", "internlm-xcomposer2-4khd-7b", "--out", tmp_path / "o336", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["outputs"][0]["res"] == 336, "a 224-px source is converted to the 336 px 4KHD runs at"
    r = xcr("resize", "--model", make_ckpt(), "--preset", "internlm-xcomposer2-4khd-7b", "--vision-only",
            "--out", tmp_path / "vision", "--quiet")  # fmt: skip
    assert r.code == 0 and (tmp_path / "vision" / "config.json").is_file(), "a new form is still written"


@pytest.mark.parametrize(
    ("presets", "message"),
    [
        (["internlm-xcomposer2-7b", "internlm-xcomposer2-7b"], "--preset lists internlm-xcomposer2-7b twice"),
        (["internlm-xcomposer2d5-7b", "internlm-xcomposer2d5-ol-7b"], "both run at 560 px: one output serves both"),
    ],
)
def test_presets_given_twice(xcr: Any, make_ckpt: Any, presets: list[str], message: str) -> None:
    args = [a for p in presets for a in ("--preset", p)]
    r = xcr("resize", "--model", make_ckpt(), *args)
    assert r.code == 2 and message in one_error_line(r.err)


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json", "vocab.json"])
def test_an_edited_small_file_is_not_up_to_date(xcr: Any, make_ckpt: Any, tmp_path: Path, name: str) -> None:
    src = make_ckpt()
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 490, "--out", out, "--quiet").code == 0
    data = bytearray((out / name).read_bytes())
    data[len(data) // 2] ^= 0x01  # the same size, one bit changed
    (out / name).write_bytes(bytes(data))
    r = xcr("resize", "--model", src, "--res", 490, "--out", out)
    assert r.code == 2 and f"is incomplete or damaged: {name} was changed since it was written" in one_error_line(r.err)


def test_two_identical_runs_at_once_both_succeed(xcr: Any, make_ckpt: Any, tmp_path: Path, about_to_land: Any) -> None:
    src = make_ckpt()
    out = tmp_path / "out"

    def the_twin_lands_first(tmp: Path, final: Path) -> None:
        assert xcr("resize", "--model", src, "--res", 490, "--out", out, "--quiet").code == 0

    about_to_land(the_twin_lands_first)
    r = xcr("resize", "--model", src, "--res", 490, "--out", out, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["outputs"][0]["up_to_date"] is True
    assert not [p for p in tmp_path.iterdir() if ".xcr-" in p.name]


def test_a_force_run_that_loses_the_race_says_run_again(
    xcr: Any, make_ckpt: Any, tmp_path: Path, about_to_land: Any
) -> None:
    src = make_ckpt()
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 224, "--out", out, "--quiet").code == 0

    def another_force_run_lands_first(tmp: Path, final: Path) -> None:
        assert xcr("resize", "--model", src, "--res", 336, "--out", out, "--force", "--quiet").code == 0

    about_to_land(another_force_run_lands_first)
    r = xcr("resize", "--model", src, "--res", 490, "--out", out, "--force")
    assert r.code == 1
    line = one_error_line(r.err)
    assert (
        "created or changed by someone else" in line
        and "run again to replace it" in line
        and "pass --force" not in line
    )


def test_hidden_files_and_other_formats_are_left_out_with_a_note(make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt(extra_files={".env": b"HF_TOKEN=hf_secret", "tf_model.h5": b"HDF"})
    (src / "onnx").mkdir()
    (src / "onnx" / "model.onnx").write_bytes(b"x")
    notes: list[str] = []
    resize(src, 490, tmp_path / "out", on_note=notes.append)
    assert not (tmp_path / "out" / ".env").exists() and (tmp_path / "out" / ".gitattributes").exists()
    note = next(n for n in notes if n.startswith("not carried over:"))
    assert ".env" in note and "tf_model.h5" in note and "onnx/" in note


def test_a_table_just_over_the_limit_says_by_how_much(xcr: Any, make_ckpt: Any) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", 57344, "--out", "x")
    assert r.code == 2
    assert "a position table of 2,147,483,776 bytes (limit 2.0 GiB)" in one_error_line(r.err)


@pytest.mark.parametrize(("first", "second"), [("keep", "float32"), ("float32", "keep")])
def test_a_cast_to_the_dtype_the_source_has_is_up_to_date_with_keep(
    xcr: Any, make_ckpt: Any, tmp_path: Path, first: str, second: str
) -> None:
    src = make_ckpt()  # float32
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 490, "--out", out, "--dtype", first, "--quiet").code == 0
    r = xcr("resize", "--model", src, "--res", 490, "--out", out, "--dtype", second, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["outputs"][0]["up_to_date"] is True
    r = xcr("resize", "--model", src, "--res", 490, "--out", out, "--dtype", "float16")
    assert r.code == 2 and f"was made with dtype '{first}', not 'float16'" in one_error_line(r.err)
