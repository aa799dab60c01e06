"""Messages of docs/errors.md that no other test provokes: each case makes the situation for real
and checks the documented contract: one line on stderr (the message, placeholders filled in), the
documented exit code, and nothing left behind (the test's folder byte for byte as it was: no
output, no temporary, the source untouched)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.builders import build
from tests.conftest import snapshot
from tests.hubserver import HubServer, Request
from tests.test_cli import one_error_line
from xcomposer_resize import resize

POS = "vision_model.embeddings.position_embedding.weight"
LOGIN = "log in with `hf auth login` or set HF_TOKEN"


@dataclass
class Scene:
    """What a case sets up in: its folder, the loopback Hub, monkeypatch (undone after the test),
    and the values its message names."""

    tmp: Path
    hub: HubServer
    monkeypatch: pytest.MonkeyPatch
    names: dict[str, str]

    def src(self, **kwargs: Any) -> Path:
        self.names["src"] = str(build(self.tmp / "src", **kwargs))
        return Path(self.names["src"])

    def out(self) -> Path:
        self.names["out"] = str(self.tmp / "out")
        return self.tmp / "out"

    def repo(self, folder: Path) -> str:
        self.names["rid"] = f"tester/errors-{uuid.uuid4().hex[:8]}"
        self.hub.add(self.names["rid"], folder)
        return self.names["rid"]

    def resize(self, *extra: Any) -> list[Any]:
        return ["resize", "--model", self.names["src"], "--res", 490, "--out", self.out(), *extra]


def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data) or data))


def edit_vision(src: Path, **values: Any) -> None:
    """Set vision keys in both blocks of the openai config (vision_config and vision_config_dict)."""

    def change(config: dict[str, Any]) -> None:
        for block in ("vision_config", "vision_config_dict"):
            config[block].update(values)

    edit_json(src / "config.json", change)


def edit_bin(src: Path, change: Callable[[dict[str, torch.Tensor]], None], legacy: bool = False) -> None:
    sd = dict(torch.load(src / "pytorch_model.bin", weights_only=True))
    change(sd)
    torch.save(sd, src / "pytorch_model.bin", _use_new_zipfile_serialization=not legacy)


# ---------------------------------------------------------------- the cases: (set up → arguments, exit, message)


def revision_with_a_local_folder(s: Scene) -> list[Any]:
    s.src()
    return s.resize("--revision", "main")


def out_holds_a_checkpoint(s: Scene) -> list[Any]:
    s.src()
    build(s.tmp / "out", seed=1)
    return s.resize()


def out_from_another_source(s: Scene) -> list[Any]:
    resize(build(s.tmp / "first"), 490, s.out())
    s.src(seed=1)
    return s.resize()


def config_not_an_object(s: Scene) -> list[Any]:
    (s.src() / "config.json").write_text("[336, 14]")
    return s.resize()


def no_vision_config(s: Scene) -> list[Any]:
    (s.src() / "config.json").write_text(json.dumps({"model_type": "clip", "architectures": ["CLIPModel"]}))
    return s.resize()


def image_size_below_a_patch(s: Scene) -> list[Any]:
    edit_vision(s.src(), image_size=10)
    return s.resize()


def two_image_sizes(s: Scene) -> list[Any]:
    src = s.src()
    edit_json(src / "config.json", lambda c: c["vision_config_dict"].update(image_size=224))
    return s.resize()


def patch_size_not_positive(s: Scene) -> list[Any]:
    edit_vision(s.src(), patch_size=0)
    return s.resize()


def processor_size_of_no_known_form(s: Scene) -> list[Any]:
    edit_json(s.src() / "preprocessor_config.json", lambda p: p.update(size="big"))
    return s.resize()


def processor_with_both_edges(s: Scene) -> list[Any]:
    edit_json(
        s.src() / "preprocessor_config.json", lambda p: p.update(size={"shortest_edge": 336, "longest_edge": 500})
    )
    return s.resize()


def two_position_tables(s: Scene) -> list[Any]:
    edit_bin(s.src(fmt="bin"), lambda sd: sd.update({"extra." + POS: sd[POS].clone()}))
    return s.resize()


def table_not_float(s: Scene) -> list[Any]:
    edit_bin(s.src(fmt="bin"), lambda sd: sd.update({POS: sd[POS].long()}))
    return s.resize()


def ids_not_integers(s: Scene) -> list[Any]:
    ids = "vision_model.embeddings.position_ids"
    edit_bin(s.src(fmt="bin"), lambda sd: sd.update({ids: sd[ids].float()}))
    return s.resize()


def index_without_weight_map(s: Scene) -> list[Any]:
    (s.src(fmt="sharded") / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 1}}))
    return s.resize()


def legacy_archive_cut_short(s: Scene) -> list[Any]:
    src = s.src(fmt="bin")
    edit_bin(src, lambda sd: None, legacy=True)
    (src / "pytorch_model.bin").write_bytes((src / "pytorch_model.bin").read_bytes()[:30])
    return s.resize()


def a_dtype_safetensors_cannot_store(s: Scene) -> list[Any]:
    edit_bin(s.src(fmt="bin"), lambda sd: sd.update({"extra.phase": torch.zeros(3, dtype=torch.complex64)}))
    return s.resize()


def hub_repo_without_config(s: Scene) -> list[Any]:
    src = s.src()
    (src / "config.json").unlink()
    s.names["src"] = s.repo(src)
    return s.resize()


def hub_refuses_access(s: Scene) -> list[Any]:
    s.names["src"] = s.repo(s.src())
    s.hub.repos[s.names["rid"]].forbidden = True
    return s.resize()


def hub_file_listed_but_gone(s: Scene) -> list[Any]:
    rid = s.names["src"] = s.repo(s.src())
    commit = s.hub.repos[rid].commits[s.hub.repos[rid].refs["main"]]

    def removed_before_download(request: Request) -> None:  # listed in the tree, then gone
        if request.path.startswith(f"/{rid}/resolve/") and request.path.endswith("/model.safetensors"):
            commit.pop("model.safetensors", None)

    s.monkeypatch.setattr(s.hub, "hooks", [removed_before_download])
    return s.resize()


def verify_output(s: Scene) -> tuple[Path, Path]:
    """An output made from a local source, for `xcr verify OUT --against SRC`."""
    src = s.src()
    out = s.out()
    resize(src, 490, out)
    return src, out


def verify_images_is_a_file(s: Scene) -> list[Any]:
    src, out = verify_output(s)
    s.names["images"] = str(s.tmp / "photo.png")
    (s.tmp / "photo.png").write_bytes(b"\x89PNG")
    return ["verify", out, "--against", src, "--images", s.names["images"]]


def verify_folder_without_images(s: Scene) -> list[Any]:
    src, out = verify_output(s)
    s.names["images"] = str(s.tmp / "images")
    (s.tmp / "images").mkdir()
    (s.tmp / "images" / "notes.txt").write_text("no pictures here")
    return ["verify", out, "--against", src, "--images", s.names["images"]]


def verify_an_image_pil_cannot_read(s: Scene) -> list[Any]:
    src, out = verify_output(s)
    (s.tmp / "images").mkdir()
    s.names["image"] = str(s.tmp / "images" / "broken.png")
    (s.tmp / "images" / "broken.png").write_bytes(b"not a picture at all")
    return ["verify", out, "--against", src, "--images", s.tmp / "images"]


def inspect_plot_without_the_weights(s: Scene) -> list[Any]:
    s.repo(s.src())
    return ["inspect", s.names["rid"], "--plot", s.tmp / "table.png"]


CASES: dict[str, tuple[Callable[[Scene], list[Any]], int, str]] = {
    "revision-with-a-local-folder": (
        revision_with_a_local_folder, 2,
        "--revision applies to Hub repo ids, but {src} is a local folder; leave --revision out",
    ),
    "out-holds-a-checkpoint": (
        out_holds_a_checkpoint, 2, "--out {out} already holds a checkpoint; pass --force to replace it",
    ),
    "out-from-another-source": (
        out_from_another_source, 2,
        "--out {out} holds an earlier xcr output that was made from another source (first); pass --force to replace it",
    ),
    "config-not-an-object": (config_not_an_object, 2, "{src}/config.json does not hold a JSON object"),
    "no-vision-config": (no_vision_config, 2, "config.json has no vision_config; is this a CLIP checkpoint?"),
    "image-size-below-a-patch": (
        image_size_below_a_patch, 2,
        "config.json says image_size 10, which is smaller than one patch (14 px); fix its vision config",
    ),
    "two-image-sizes": (two_image_sizes, 2, "config.json gives two different vision image_size values: [224, 336]"),
    "patch-size-not-positive": (patch_size_not_positive, 2, "config.json has vision patch_size 0, not a positive integer"),
    "processor-size-of-no-known-form": (
        processor_size_of_no_known_form, 2,
        'preprocessor_config.json has size "big"; expected an int, [h, w], {{"shortest_edge": n}}, '
        '{{"longest_edge": n}} or {{"height": n, "width": n}}',
    ),
    "processor-with-both-edges": (
        processor_with_both_edges, 2,
        'preprocessor_config.json has size {{"shortest_edge": 336, "longest_edge": 500}}: with both shortest_edge '
        "and longest_edge the new sizes are a choice xcr will not guess; set that file's sizes by hand",
    ),
    "two-position-tables": (
        two_position_tables, 2, f"found 2 vision position tables (extra.{POS}, {POS}); expected one",
    ),
    "table-not-float": (table_not_float, 2, f"{POS} is I64 [577, 32]; expected a float [rows, channels] table"),
    "ids-not-integers": (
        ids_not_integers, 2, "vision_model.embeddings.position_ids is F32 [1, 577]; expected integer ids [1, 577]",
    ),
    "index-without-weight-map": (
        index_without_weight_map, 2, "model.safetensors.index.json has no weight_map; re-download the checkpoint",
    ),
    "legacy-archive-cut-short": (
        legacy_archive_cut_short, 2,
        "pytorch_model.bin is not a readable PyTorch checkpoint (unpack requires a buffer of 4 bytes); re-download it",
    ),
    "a-dtype-safetensors-cannot-store": (
        a_dtype_safetensors_cannot_store, 2, "tensors of dtype complex64 cannot be stored in safetensors",
    ),
    "hub-repo-without-config": (
        hub_repo_without_config, 1,
        "{rid} has no config.json (nor open_clip_config.json) at main; is it a transformers, timm or open_clip model?",
    ),
    "hub-refuses-access": (hub_refuses_access, 1, "the Hub refused access to {rid} (HTTP 403); " + LOGIN),
    "hub-file-listed-but-gone": (
        hub_file_listed_but_gone, 1, "a file of {rid} listed by the Hub could not be downloaded (not found); try again",
    ),
    "verify-images-is-a-file": (
        verify_images_is_a_file, 2, "--images {images} is not a folder of images; give the folder that holds it",
    ),
    "verify-folder-without-images": (
        verify_folder_without_images, 2,
        "{images} holds no images (.png, .jpg, .jpeg, .webp, .bmp, .gif); give a folder that does",
    ),
    "verify-an-image-pil-cannot-read": (
        verify_an_image_pil_cannot_read, 2,
        "{image} is not an image PIL can read (cannot identify image file '{image}'); fix it or move it out",
    ),
    "inspect-plot-without-the-weights": (
        inspect_plot_without_the_weights, 2, "--plot needs the weights on this machine, and those of {rid} are not",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_the_documented_message(
    xcr: Any, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    setup, code, message = CASES[case]
    scene = Scene(tmp_path, hub, monkeypatch, {})
    args = setup(scene)
    before = snapshot(tmp_path)
    r = xcr(*args)
    assert r.code == code, (r.code, r.err)
    line = one_error_line(r.err)
    want = "xcr: error: " + message.format(**scene.names)
    assert line == want, f"\n{line}\n{want}"
    assert r.out == "", "nothing on stdout but a result"
    assert snapshot(tmp_path) == before, "nothing left behind, nothing changed"
    assert not [p for p in tmp_path.rglob("*") if ".xcr-" in p.name]
