"""xcr's timm and open_clip outputs against the real libraries, not against our reading of them.

Optional: these run only when XCR_REAL_LIBS_PYTHON names a python that imports timm and open_clip
(`make real-libs` builds one, tests/real_libs_venv.sh); neither library is a dependency of xcr or of
its required tests, and they cannot be imported beside the project's CPU torch. Each test builds a
complete tiny fixture (tests/family_builders.py, every tensor the library's model holds), converts
it in process, and runs a script in that python which loads the output with the library's own
loader: `timm.create_model("local-dir:OUT", pretrained=True)` (timm's hub layout) or
`open_clip.create_model_and_transforms("local-dir:OUT")`, offline. It checks that the output loads
(both load strictly), that the model is built for the new size and takes an image of it, and that
its features equal, bit for bit, the SOURCE's run by the same library at the new size with that
library's own resampling: timm resamples a checkpoint's table as it loads it into a model built at
the new size (`img_size`), open_clip as it loads its own towers (`force_image_size`) and, for a timm
trunk, with timm's `set_input_size` after loading.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from xcomposer_resize import resize
from xcomposer_resize.families import TIMM_SIZES

PYTHON = os.environ.get("XCR_REAL_LIBS_PYTHON", "")


@functools.cache
def _libraries() -> tuple[str, str]:
    """(what the interpreter has, why it cannot be used: "" when it can)."""
    if not PYTHON:
        return "", "XCR_REAL_LIBS_PYTHON is not set (make real-libs builds a python with timm and open_clip)"
    try:
        done = subprocess.run(
            [PYTHON, "-c", "import timm, open_clip, torch; print(timm.__version__, open_clip.__version__)"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    except OSError as e:
        return "", f"XCR_REAL_LIBS_PYTHON={PYTHON} cannot run: {e}"
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return "", f"XCR_REAL_LIBS_PYTHON={PYTHON} cannot import timm and open_clip: {last}"
    return done.stdout.strip(), ""


pytestmark = pytest.mark.skipif(not PYTHON or bool(_libraries()[1]), reason=_libraries()[1] or "usable")

# Runs in XCR_REAL_LIBS_PYTHON. argv[1]: the job as JSON. Prints one JSON line: what it found.
CHILD = r"""
import json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
import torch

job = json.loads(sys.argv[1])
h, w = job["res"] if isinstance(job["res"], list) else (job["res"], job["res"])
torch.manual_seed(0)
x = torch.randn(2, 3, h, w)
found = {}

def table(model):
    return model.visual.trunk.pos_embed if job.get("trunk") else model.visual.positional_embedding

if job["kind"] == "timm":
    import timm
    from safetensors.torch import load_file
    out = timm.create_model("local-dir:" + job["out"], pretrained=True).eval()
    src = timm.create_model("local-dir:" + job["src"], pretrained=True, img_size=job["res"]).eval()
    found["loaded_table_is_the_file"] = torch.equal(out.pos_embed, load_file(job["out"] + "/model.safetensors")["pos_embed"])
    found["input_size"] = list(timm.data.resolve_data_config({}, model=out)["input_size"])
    found["tables_equal"] = torch.equal(out.pos_embed, src.pos_embed)
    with torch.no_grad():
        a, b = out.forward_features(x), src.forward_features(x)
elif job["kind"] == "open_clip":
    import dataclasses
    import open_clip
    found["reads_kwargs"] = "timm_model_kwargs" in {f.name for f in dataclasses.fields(open_clip.model.CLIPVisionCfg)}
    if job.get("kwargs") and not found["reads_kwargs"]:
        try:
            open_clip.create_model_and_transforms("local-dir:" + job["out"])
        except Exception as e:
            found["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(found))
        sys.exit(0)
    out, _, pre = open_clip.create_model_and_transforms("local-dir:" + job["out"])
    src, _, _ = open_clip.create_model_and_transforms("local-dir:" + job["src"], force_image_size=job["res"])
    out.eval(); src.eval()
    from safetensors.torch import load_file
    name = "visual.trunk.pos_embed" if job.get("trunk") else "visual.positional_embedding"
    found["loaded_table_is_the_file"] = torch.equal(table(out), load_file(job["out"] + "/open_clip_model.safetensors")[name])
    found["input_size"] = [3, *out.visual.image_size]
    found["preprocess_size"] = pre.transforms[0].size
    found["tables_equal"] = torch.equal(table(out), table(src))
    if job.get("trunk"):
        found["architecture"] = out.visual.trunk.pretrained_cfg["architecture"]
        found["trunk_img_size"] = list(out.visual.trunk.patch_embed.img_size)
    with torch.no_grad():
        a, b = out.encode_image(x), src.encode_image(x)
found["shape"] = list(a.shape)
found["features_equal"] = torch.equal(a, b)
found["max_difference"] = (a - b).abs().max().item()
print(json.dumps(found))
"""


def real(job: dict[str, Any]) -> dict[str, Any]:
    """Run CHILD on `job` in XCR_REAL_LIBS_PYTHON; what it found."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    done = subprocess.run([PYTHON, "-c", CHILD, json.dumps(job)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def sides(res: int | str) -> list[int]:
    h, _, w = str(res).partition("x")
    return [int(h), int(w or h)]


# ---------------------------------------------------------------- timm's hub layout


@pytest.mark.parametrize(
    ("prefix", "res"),
    [("cls", 384), ("cls", "160x256"), ("cls+reg4", 320), ("none", 384)],  # class token; 4 registers; neither
)
def test_timm_loads_the_output_and_computes_the_source_at_the_new_size(tmp_path: Path, prefix: str,
                                                                      res: int | str) -> None:  # fmt: skip
    from tests.family_builders import build_timm

    src = build_timm(tmp_path / "src", prefix=prefix, complete=True)
    resize(src, res, tmp_path / "out")
    found = real({"kind": "timm", "src": str(src), "out": str(tmp_path / "out"), "res": sides(res)})
    assert found["loaded_table_is_the_file"], "timm loaded the table as written, not a resampled one"
    assert found["input_size"] == [3, *sides(res)]
    assert found["tables_equal"] and found["features_equal"], found


# ---------------------------------------------------------------- open_clip's hub layout


@pytest.mark.parametrize("res", [448, 160, "160x256"])
def test_open_clip_loads_the_output_and_computes_the_source_at_the_new_size(tmp_path: Path, res: int | str) -> None:
    from tests.family_builders import build_open_clip

    src = build_open_clip(tmp_path / "src", complete=True)
    resize(src, res, tmp_path / "out")
    found = real({"kind": "open_clip", "src": str(src), "out": str(tmp_path / "out"), "res": sides(res)})
    assert found["loaded_table_is_the_file"], "open_clip loaded the table as written"
    assert found["input_size"] == [3, *sides(res)]
    assert found["tables_equal"] and found["features_equal"], found


@pytest.fixture(scope="module")
def siglip_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """timm/ViT-B-16-SigLIP's layout: open_clip on vit_base_patch16_siglip_224, no class token, MAP
    pool, at its real width (open_clip 3.3.0 builds a trunk only as timm defines it): 93M parameters."""
    from tests.family_builders import build_open_clip

    return build_open_clip(tmp_path_factory.mktemp("siglip") / "src", trunk="siglip-base", complete=True)


@pytest.mark.parametrize("res", [384, 512])
def test_open_clip_loads_a_timm_trunk_output_at_the_new_size(tmp_path: Path, siglip_base: Path, res: int) -> None:
    """The defect of issue 16: the output named the old architecture and stated timm_model_kwargs,
    which open_clip 3.3.0 refuses. Now it names timm's architecture of the new size."""
    resize(siglip_base, res, tmp_path / "out")
    job = {"kind": "open_clip", "src": str(siglip_base), "out": str(tmp_path / "out"), "res": res, "trunk": True}
    found = real(job)
    assert found["architecture"] == f"vit_base_patch16_siglip_{res}" and found["trunk_img_size"] == [res, res]
    assert found["loaded_table_is_the_file"], "open_clip loaded the trunk's table as written (strictly)"
    assert found["input_size"] == [3, res, res] and found["preprocess_size"] == res
    assert found["tables_equal"] and found["features_equal"], found


def test_a_timm_model_kwargs_output_is_for_the_open_clip_that_reads_it(tmp_path: Path, siglip_base: Path) -> None:
    """A source that states vision_cfg.timm_model_kwargs is written in that form, at any size: the
    installed open_clip refuses it when it is 3.3.0 (as it refused xcr's outputs before), and loads
    it at the new size when it reads the key."""
    src = tmp_path / "src"
    shutil.copytree(siglip_base, src)
    config = json.loads((src / "open_clip_config.json").read_text())
    config["model_cfg"]["vision_cfg"]["timm_model_kwargs"] = {}
    (src / "open_clip_config.json").write_text(json.dumps(config))
    resize(src, 320, tmp_path / "out")
    job = {"kind": "open_clip", "src": str(siglip_base), "out": str(tmp_path / "out"), "res": 320, "trunk": True}
    found = real({**job, "kwargs": True})
    if not found["reads_kwargs"]:  # open_clip 3.3.0
        assert "unexpected keyword argument 'timm_model_kwargs'" in found["error"], found
        return
    assert found["trunk_img_size"] == [320, 320] and found["tables_equal"] and found["features_equal"], found


# ---------------------------------------------------------------- xcr's table of timm architectures

REGISTRY = r"""
import json, re, sys
import timm
from timm.models import _registry
from timm.models._builder import resolve_pretrained_cfg

class Stop(Exception):
    pass

def capture(model_cls, variant, pretrained, **kwargs):
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.pop("pretrained_cfg", None),
                                 pretrained_cfg_overlay=kwargs.pop("pretrained_cfg_overlay", None)).to_dict()
    kwargs.pop("cache_dir", None)
    size = kwargs.pop("img_size", None)
    if size is None and cfg.get("fixed_input_size"):
        size = cfg["input_size"][1:]
    raise Stop(json.dumps([model_cls.__name__, {k: repr(v) for k, v in kwargs.items()},
                           list(size) if isinstance(size, (list, tuple)) else [size, size]]))

stems = json.loads(sys.argv[1])
builds = {}
for name in timm.list_models():
    stem = re.sub(r"_\d+$", "", name)
    if stem not in stems:
        continue
    fn = _registry.model_entrypoint(name)
    sys.modules[fn.__module__].build_model_with_cfg = capture
    try:
        fn(pretrained=False)
    except Stop as e:
        builds[name] = json.loads(str(e))
print(json.dumps(builds))
"""


def test_timm_sizes_are_one_network_each_in_timm() -> None:
    """Each TIMM_SIZES name is built by timm as the same class with the same arguments but img_size,
    at the size its name ends in; and timm has no other size of that network that the table misses."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [PYTHON, "-c", REGISTRY, json.dumps(sorted(TIMM_SIZES))], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    builds = json.loads(done.stdout.strip().splitlines()[-1])
    for stem, sizes in TIMM_SIZES.items():
        first = builds[f"{stem}_{sizes[0]}"]
        for n in sizes:
            cls, kwargs, built = builds[f"{stem}_{n}"]
            assert built == [n, n], f"timm builds {stem}_{n} at {built}"
            assert (cls, kwargs) == (first[0], first[1]), f"{stem}_{n} is not {stem}_{sizes[0]} at another size"
        others = [
            name for name, (cls, kwargs, built) in builds.items()
            if name.rsplit("_", 1)[0] == stem and (cls, kwargs) == (first[0], first[1])
            and int(name.rsplit("_", 1)[1]) not in sizes
        ]  # fmt: skip
        assert not others, f"timm has {others} too: add them to TIMM_SIZES[{stem!r}]"
