"""The command contract: flags, exit codes, one-line errors, --json, default output names."""

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
from xcomposer_resize import __version__
from xcomposer_resize.errors import UsageError
from xcomposer_resize.size import Size

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "clip-vit-tiny-patch14-336"


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xcr: error: "), err
    assert "Traceback" not in err
    return lines[0]


def no_litter(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if ".xcr-" in p.name]


def test_resize_writes_and_summarises(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert "490 px, 35×35 grid" in r.out and "vision_model.embeddings.position_embedding.weight" in r.out
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_json_is_one_object_on_stdout(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    r = xcr("resize", "--model", src, "--res", 224, "--out", tmp_path / "out", "--json")
    assert r.code == 0 and r.err == ""
    data = json.loads(r.out)
    assert set(data) >= {"ok", "source", "outputs", "tensors_rewritten", "bytes_written", "seconds"} and data["ok"]
    settings = {
        "config.json": {"vision_config.image_size": [336, 224], "vision_config_dict.image_size": [336, 224]},
        "preprocessor_config.json": {"crop_size": [336, 224], "size": [336, 224]},
    }  # the legacy block too
    assert data["outputs"] == [
        {"path": str(tmp_path / "out"), "res": 224, "grid": [16, 16], "up_to_date": False, "settings": settings}
    ]
    assert data["tensors_rewritten"] == [
        "vision_model.embeddings.position_embedding.weight",
        "vision_model.embeddings.position_ids",
    ]
    assert data["bytes_written"] == sum(p.stat().st_size for p in (tmp_path / "out").iterdir())
    assert data["source"] == str(src)


def test_the_settings_each_output_changed(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    """--json says, per output, what the rewrite changed in each JSON file (dotted keys, [before, after]);
    the summary names the keys; an output already up to date changed nothing in this run (null)."""
    src = make_ckpt()
    r = xcr("resize", "--model", src, "--res", 224, "--res", 490, "--dtype", "bfloat16", "--out",
            tmp_path / "{res}", "--json")  # fmt: skip
    assert r.code == 0, r.err
    first, second = json.loads(r.out)["outputs"]
    assert first["settings"]["config.json"] == {"torch_dtype": ["float32", "bfloat16"],
                                                "vision_config.image_size": [336, 224],
                                                "vision_config_dict.image_size": [336, 224]}  # fmt: skip
    assert second["settings"]["config.json"]["vision_config.image_size"] == [336, 490]
    assert second["settings"]["preprocessor_config.json"] == {"crop_size": [336, 490], "size": [336, 490]}
    assert json.loads((tmp_path / "490" / "preprocessor_config.json").read_text())["size"] == 490

    again = xcr("resize", "--model", src, "--res", 490, "--dtype", "bfloat16", "--out", tmp_path / "{res}", "--json")
    assert json.loads(again.out)["outputs"][0] == {"path": str(tmp_path / "490"), "res": 490, "grid": [35, 35],
                                                    "up_to_date": True, "settings": None}  # fmt: skip

    text = xcr("resize", "--model", src, "--res", 224, "--vision-only", "--out", tmp_path / "tower")
    assert text.code == 0, text.err
    assert (
        "settings: config.json (image_size), preprocessor_config.json (crop_size, size)" in text.out
    )  # the tower's config


def test_quiet_prints_nothing(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", 224, "--out", tmp_path / "out", "--quiet")
    assert (r.code, r.out, r.err) == (0, "", "")


@pytest.mark.parametrize(
    ("name", "res", "expected"),
    [
        ("clip-vit-large-patch14-336", 490, "clip-vit-large-patch14-490"),
        ("my-clip", 224, "my-clip-224"),
        ("clip336-ft", 224, "clip224-ft"),
    ],
)
def test_default_output_name(
    xcr: Any, make_ckpt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, res: int, expected: str
) -> None:
    src = make_ckpt(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    r = xcr("resize", "--model", src, "--res", res, "--quiet")
    assert r.code == 0, r.err
    assert [p.name for p in work.iterdir()] == [expected]


@pytest.mark.parametrize(
    ("res", "message"),
    [
        (5, "--res 5 is smaller than one 14-px patch; use at least 14"),
        (0, "--res 0 is not a positive number of pixels; give a size such as 490"),
        (-14, "--res -14 is not a positive number of pixels; give a size such as 490"),
    ],
)
def test_bad_res(xcr: Any, make_ckpt: Any, tmp_path: Path, res: int, message: str) -> None:
    src = make_ckpt()
    before = snapshot(src)
    r = xcr("resize", "--model", src, "--res", res, "--out", tmp_path / "out")
    assert r.code == 2
    assert one_error_line(r.err) == f"xcr: error: {message}"
    assert not (tmp_path / "out").exists() and snapshot(src) == before


def test_absurd_res_is_refused_before_allocating(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", 14 * 100_000, "--out", tmp_path / "out")
    assert r.code == 2
    line = one_error_line(r.err)
    assert (
        "--res 1400000 means a 100000×100000 grid and a position table of" in line
        and "GiB" in line
        and "smaller --res" in line
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--mode", "lanczos"], "'lanczos' is not one of"),
        (["--device", "tpu"], "'tpu' is not one of"),
        (["--mode", "nearest", "--antialias"], "--antialias works only with --mode bicubic or bilinear, not nearest"),
        (["--res", "abc"], "'abc' is not a size such as 490, or 448x672 (height x width)"),
        (["--res", "448x672"], "--res 448x672 is not square, and a CLIP checkpoint cannot be: transformers' CLIP"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_bad_flags(xcr: Any, make_ckpt: Any, tmp_path: Path, args: list[str], fragment: str) -> None:
    base = ["resize", "--model", str(make_ckpt()), "--out", str(tmp_path / "out")]
    if "--res" not in args:
        base += ["--res", "490"]
    r = xcr(*base, *args)
    assert r.code == 2
    assert fragment in one_error_line(r.err)
    assert not (tmp_path / "out").exists()


def test_a_square_hxw_is_its_side(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", "490x490", "--out", tmp_path / "out", "--quiet")
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "out" / "config.json").read_text())["vision_config"]["image_size"] == 490


def test_missing_res(xcr: Any) -> None:
    r = xcr("resize")
    assert r.code == 2 and "--res" in one_error_line(r.err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "out", "--device", "cuda")
    assert r.code == 2
    assert "--device cuda: no CUDA GPU is usable here" in one_error_line(r.err)
    assert not (tmp_path / "out").exists()


def test_missing_model_path(xcr: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", tmp_path / "nope", "--res", 490)
    assert r.code == 2 and "does not exist" in one_error_line(r.err)


def test_model_is_a_file(xcr: Any, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    r = xcr("resize", "--model", tmp_path / "f", "--res", 490)
    assert r.code == 2 and "is a file" in one_error_line(r.err)


def test_folder_without_config(xcr: Any, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = xcr("resize", "--model", tmp_path / "empty", "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2 and "has no config.json" in one_error_line(r.err)


def test_folder_without_weights(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    (src / "model.safetensors").unlink()
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2 and "has no weights" in one_error_line(r.err)
    assert not (tmp_path / "out").exists()
    no_litter(tmp_path)


def test_config_that_disagrees_with_the_weights(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    config = json.loads((src / "config.json").read_text())
    config["vision_config"]["image_size"] = config["vision_config_dict"]["image_size"] = 224
    (src / "config.json").write_text(json.dumps(config))
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2
    assert "config and the weights disagree" in one_error_line(r.err)
    assert not (tmp_path / "out").exists()
    no_litter(tmp_path)


def test_not_a_clip_checkpoint(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    (src / "config.json").write_text(json.dumps({"model_type": "llama"}))
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2 and "model_type 'llama'" in one_error_line(r.err)


def test_existing_output_needs_force_and_is_untouched(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    src = make_ckpt()
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 224, "--out", out, "--quiet").code == 0
    before = snapshot(out)
    r = xcr("resize", "--model", src, "--res", 490, "--out", out)
    assert r.code == 2 and "pass --force" in one_error_line(r.err)
    assert snapshot(out) == before
    r = xcr("resize", "--model", src, "--res", 490, "--out", out, "--force", "--quiet")
    assert r.code == 0, r.err
    assert json.loads((out / "config.json").read_text())["vision_config"]["image_size"] == 490
    no_litter(tmp_path)


def test_empty_existing_output_is_fine(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "out", "--quiet")
    assert r.code == 0 and (tmp_path / "out" / "config.json").is_file()


@pytest.mark.parametrize("where", ["same", "inside", "parent"])
def test_output_never_touches_the_source(xcr: Any, make_ckpt: Any, tmp_path: Path, where: str) -> None:
    src = make_ckpt()
    before = snapshot(src)
    out = {"same": src, "inside": src / "sub", "parent": src.parent}[where]
    r = xcr("resize", "--model", src, "--res", 490, "--out", out, "--force")
    assert r.code == 2
    assert "source folder" in one_error_line(r.err)
    assert snapshot(src) == before


def test_output_never_inside_a_hub_cache(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    cache = Path(os.environ["HF_HUB_CACHE"])
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", cache / "x")
    assert r.code == 2 and "Hugging Face cache" in one_error_line(r.err)
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "models--a--b" / "snapshots" / "x")
    assert r.code == 2 and "Hugging Face cache" in one_error_line(r.err)


def test_version_and_help(xcr: Any) -> None:
    r = xcr("--version")
    assert r.code == 0 and r.out.startswith("xcr ")
    r = xcr("resize", "--help")
    assert r.code == 0
    for flag in (
        "--model",
        "--res",
        "--out",
        "--force",
        "--device",
        "--mode",
        "--antialias",
        "--json",
        "--quiet",
        "--revision",
        "--token",
    ):
        assert flag in r.out


def run_real(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed entry point, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "xcomposer_resize", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_real_process_error_has_no_traceback_unless_debug(tmp_path: Path) -> None:
    p = run_real("resize", "--model", str(tmp_path / "nope"), "--res", "490")
    assert p.returncode == 2 and one_error_line(p.stderr)
    p = run_real("resize", "--model", str(tmp_path / "nope"), "--res", "490", env={"XCR_DEBUG": "1"})
    assert p.returncode != 0 and "Traceback" in p.stderr and "InputError" in p.stderr


def test_demo_checkpoint_converts(tmp_path: Path) -> None:
    p = run_real("resize", "--model", str(DEMO), "--res", "490", "--out", str(tmp_path / "demo"), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["outputs"][0]["grid"] == [35, 35]
    assert sum(f.stat().st_size for f in DEMO.iterdir()) < 1_000_000


def test_console_entry_point_flushes_output_and_runs_exit_handlers(tmp_path: Path) -> None:
    """`run()` skips the interpreter's slow teardown, but not what a user would miss."""
    marker = tmp_path / "atexit-ran"
    code = (
        "import atexit, sys; from pathlib import Path; "
        f"atexit.register(Path({str(marker)!r}).write_text, 'yes'); "
        "sys.argv = ['xcr', '--version']; from xcomposer_resize.cli.main import run; run()"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip().endswith(__version__)
    assert marker.read_text() == "yes"


# ------------------------------------------------------------------ rough edges a newcomer hit


@pytest.mark.parametrize("how", ["console script", "python -m"])
def test_no_arguments_shows_the_normal_help(how: str) -> None:
    script = Path(sys.executable).parent / "xcr"  # installed by `pip install -e .` beside this python
    cmd = [str(script)] if how == "console script" else [sys.executable, "-m", "xcomposer_resize"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "error" not in p.stderr and "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert lines[0].startswith("Usage: xcr [OPTIONS] COMMAND")
    assert any(line.strip().startswith("resize") for line in lines), "commands listed one per line"
    assert len(lines) > 5


def test_several_res_need_a_res_placeholder_in_out(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", 224, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2
    assert one_error_line(r.err) == (
        "xcr: error: --out names one folder; with several resolutions it must hold {res}, e.g. --out ckpt/clip-{res}"
    )
    assert not (tmp_path / "out").exists()


def test_res_or_preset_is_needed(xcr: Any, make_ckpt: Any) -> None:
    r = xcr("resize", "--model", make_ckpt())
    assert (
        r.code == 2
        and one_error_line(r.err) == "xcr: error: give --res N (repeatable) or --preset NAME (see xcr presets)"
    )


def test_a_huge_res_says_the_largest_that_works(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    from xcomposer_resize.options import check_res

    r = xcr("resize", "--model", make_ckpt(), "--res", 1_000_000, "--out", tmp_path / "out")
    assert r.code == 2
    line = one_error_line(r.err)
    largest = int(line.rsplit("at most ", 1)[1])
    assert "--res 1000000 means a 71428×71428 grid" in line and largest % 14 == 0
    check_res(Size.square(largest), 14, 32, 1)  # the size it names is accepted
    with pytest.raises(UsageError):
        check_res(Size.square(largest + 14), 14, 32, 1)  # and the next grid is not


def test_a_res_that_is_not_a_multiple_is_accepted_with_a_note(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    """transformers and timm take any size (the grid is res // patch); 500 px with 14-px patches is
    a 35×35 grid whose patches cover 490 px. The output runs at 500 as the source does there."""
    from transformers import CLIPModel

    from tests.test_convert import load

    src = make_ckpt()
    r = xcr("resize", "--model", src, "--res", 500, "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert (
        "--res 500 is not a multiple of the patch size 14: the 35×35 grid covers 490 px and the patch embedding "
        "does not see the last 10 px on the right and at the bottom (as at run time); 490 or 504 would fit exactly"
    ) in r.err
    assert json.loads((tmp_path / "out" / "config.json").read_text())["vision_config"]["image_size"] == 500
    pixels = torch.randn(1, 3, 500, 500, generator=torch.Generator().manual_seed(1))
    out, ref = load(tmp_path / "out"), load(src)  # in fresh memory: equal inputs give equal bits
    assert isinstance(out, CLIPModel)
    with torch.no_grad():
        got = out.vision_model(pixel_values=pixels).last_hidden_state
        want = ref.vision_model(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
    assert got.shape[1] == 1 + 35 * 35
    assert torch.equal(got, want), (got - want).abs().max()


def test_a_vision_config_without_image_size_uses_what_transformers_assumes(
    xcr: Any, make_ckpt: Any, tmp_path: Path
) -> None:
    from transformers import CLIPModel

    src = make_ckpt(image_size=224)
    config = json.loads((src / "config.json").read_text())
    for block in ("vision_config", "vision_config_dict"):
        del config[block]["image_size"]
    (src / "config.json").write_text(json.dumps(config))
    assert CLIPModel.from_pretrained(src).config.vision_config.image_size == 224, "transformers' default"
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert "does not state the vision image_size; transformers assumes 224 px" in r.err
    new = json.loads((tmp_path / "out" / "config.json").read_text())
    assert new["vision_config"]["image_size"] == new["vision_config_dict"]["image_size"] == 490
    assert CLIPModel.from_pretrained(tmp_path / "out").config.vision_config.image_size == 490


def test_a_missing_image_size_that_disagrees_with_the_weights_says_why(
    xcr: Any, make_ckpt: Any, tmp_path: Path
) -> None:
    src = make_ckpt()  # a 24×24 grid
    config = json.loads((src / "config.json").read_text())
    for block in ("vision_config", "vision_config_dict"):
        del config[block]["image_size"]
    (src / "config.json").write_text(json.dumps(config))
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2
    line = one_error_line(r.err)
    assert "does not state the vision image_size, so transformers assumes 224 px with 14-px patches" in line
    assert "holds a 24×24 grid of 14-px patches (336 px)" in line
    assert line.endswith('set "image_size": 336, "patch_size": 14 in its vision config')


def test_without_image_size_and_patch_size_no_hint_is_given_for_patches_the_weights_do_not_have(
    xcr: Any, make_ckpt: Any, tmp_path: Path
) -> None:
    src = make_ckpt()
    config = json.loads((src / "config.json").read_text())
    for block in ("vision_config", "vision_config_dict"):
        del config[block]["image_size"], config[block]["patch_size"]
    (src / "config.json").write_text(json.dumps(config))
    r = xcr("resize", "--model", src, "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2
    line = one_error_line(r.err)
    assert "does not state the vision image_size and patch_size, so transformers assumes 224 px with 32-px" in line
    assert "multiple" not in line and line.endswith('set "image_size": 336, "patch_size": 14 in its vision config')


def test_a_bare_name_that_is_neither_a_folder_nor_a_repo(xcr: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", "nope", "--res", 490, "--out", tmp_path / "out")
    assert r.code == 2
    assert "no folder or Hub repo named nope" in one_error_line(r.err)


def test_a_bare_name_with_the_hub_unreachable(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = run_real("resize", "--model", "nope", "--res", "490", "--out", str(tmp_path / "out"),
                 env={"HF_ENDPOINT": f"http://127.0.0.1:{port}"})  # fmt: skip
    assert p.returncode == 1
    line = one_error_line(p.stderr)
    assert line.startswith("xcr: error: nope is not a folder here, and as a Hub repo id:")


def test_the_progress_bar_counts_in_the_units_of_the_summary() -> None:
    import io

    from rich.console import Console

    from xcomposer_resize.cli.render import progress_bar as _progress_bar

    bar = _progress_bar()
    task = bar.add_task("write", total=3 * 2**20)
    bar.update(task, completed=3 * 2**19)
    buf = io.StringIO()
    Console(file=buf, width=120).print(bar.get_renderable())
    assert "1.5/3.0 MiB" in buf.getvalue(), buf.getvalue()


def test_out_with_a_tilde_is_expanded(make_ckpt: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.run(
        [sys.executable, "-m", "xcomposer_resize", "resize", "--model", str(make_ckpt()), "--res", "490",
         "--out=~/clip-490", "--json"],
        capture_output=True, text=True, cwd=work, env={**os.environ, "HOME": str(home)}, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert (home / "clip-490" / "model.safetensors").is_file()
    assert not (work / "~").exists()
    assert json.loads(p.stdout)["outputs"][0]["path"] == str(home / "clip-490")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"res": "49O"}, "res '49O' is not a size such as 490 or 448x672 (height x width)"),
        ({"res": "448x672"}, "res='448x672' is not square, and a CLIP checkpoint cannot be"),
        ({"res": ["224", 224]}, "res lists 224 twice; give each resolution once"),
        ({"res": "0x14"}, "res='0x14' is not a positive number of pixels"),
        ({"res": [224, 224]}, "res lists 224 twice; give each resolution once"),
        ({"res": []}, "res is empty; give at least one resolution"),
        ({"res": True}, "res must be a whole number of pixels, not True"),
        ({"res": 4.5}, "res must be a whole number of pixels or a list of them, not float 4.5"),
        ({"res": 0}, "res=0 is not a positive number of pixels; give a size such as 490"),
        ({"res": 5}, "res=5 is smaller than one 14-px patch; use at least 14"),
        ({"res": 490, "mode": "lanczos"}, "mode must be one of bicubic, bilinear, nearest, area, not 'lanczos'"),
        ({"res": 490, "force": "yes"}, "force must be True or False, not 'yes'"),
        ({"res": 490, "mode": "nearest", "antialias": True}, "antialias=True works only with mode bicubic or bilinear"),
        ({"res": [224, 490], "out": "x"}, "out names one folder; with several resolutions it must hold {res}"),
        ({"res": 490, "token": 5}, "token must be a non-empty string or None, not int"),
    ],
)
def test_the_python_api_validates_its_arguments_in_its_own_terms(
    make_ckpt: Any, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    from xcomposer_resize import XcrError, resize

    with pytest.raises(XcrError) as e:
        resize(make_ckpt(), out=kwargs.pop("out", tmp_path / "out"), **kwargs)
    assert e.value.exit_code == 2
    assert str(e.value).startswith(message), str(e.value)
    assert "--" not in str(e.value), "no command-line flags in the API's messages"
    assert not (tmp_path / "out").exists()


def test_the_python_api_accepts_numpy_integers(make_ckpt: Any, tmp_path: Path) -> None:
    import numpy as np

    from xcomposer_resize import resize

    result = resize(make_ckpt(), np.int64(224), tmp_path / "out")
    assert result.outputs[0].res == Size(224, 224) and type(result.outputs[0].res.height) is int
    assert json.dumps(result.to_json()["outputs"][0]["res"]) == "224"


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["resize", "--model", "{tmp}/nowhere", "--res", "490"], 2, "does not exist"),
        (["resize", "--res", "490", "--bogus"], 2, "No such option: --bogus"),
        (["inspect", "{tmp}/nowhere"], 2, "does not exist"),
        (["verify", "{tmp}/nowhere"], 2, "does not exist"),
    ],
)
def test_a_failed_json_run_says_so_in_one_object_on_stdout(
    xcr: Any, tmp_path: Path, args: list[str], code: int, fragment: str
) -> None:
    r = xcr(*[a.replace("{tmp}", str(tmp_path)) for a in args], "--json")
    assert r.code == code
    data = json.loads(r.out)
    assert data["ok"] is False and data["exit_code"] == code and fragment in data["error"]
    assert data["error"] == one_error_line(r.err).removeprefix("xcr: error: ")


def test_a_json_result_is_never_followed_by_a_second_object(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    """verify --json of a failing output: its result says ok false; the failure adds no error object."""
    src = make_ckpt()
    out = tmp_path / "out"
    assert xcr("resize", "--model", src, "--res", 490, "--out", out, "--quiet").code == 0
    config = json.loads((out / "config.json").read_text())
    config["vision_config"]["image_size"] = 224
    (out / "config.json").write_text(json.dumps(config))
    r = xcr("verify", out, "--against", src, "--json")
    assert r.code == 1
    (line,) = r.out.splitlines()
    assert json.loads(line)["ok"] is False


def test_resize_verify_prints_the_checks_before_the_final_line(xcr: Any, make_ckpt: Any, tmp_path: Path) -> None:
    r = xcr("resize", "--model", make_ckpt(), "--res", 490, "--out", tmp_path / "out", "--verify")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    checks = max(i for i, line in enumerate(lines) if "checks that ran passed" in line)
    done = next(i for i, line in enumerate(lines) if line.startswith(f"✓ {tmp_path}"))
    assert checks < done and "490 px, 35×35 grid" in lines[done]
