"""Sources on the Hub: the real huggingface_hub client against the loopback hub server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.builders import build
from tests.hubserver import HubServer
from tests.test_convert import POS, image_features, load, tensors

META = {".gitattributes", "README.md", "config.json", "preprocessor_config.json", "vocab.json", "merges.txt",
        "tokenizer_config.json", "special_tokens_map.json"}  # fmt: skip


def repo_id() -> str:
    return f"tester/clip-{uuid.uuid4().hex[:8]}-336"


def xcr_process(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xcomposer_resize", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=180,
    )  # fmt: skip


def test_default_model_bin_only_repo_downloads_only_what_it_needs(
    xcr: Any, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = build(tmp_path / "src", fmt="bin", extra_files={"tf_model.h5": b"HDF" * 1000})
    sha = hub.add("openai/clip-vit-large-patch14-336", src)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    r = xcr("resize", "--res", "490", "--json")
    assert r.code == 0, r.err
    assert r.err == "", "--json: no progress bars, nothing on stderr"
    data = json.loads(r.out)
    assert data["source"] == "openai/clip-vit-large-patch14-336" and data["revision"] == sha
    out = work / "clip-vit-large-patch14-490"
    assert data["outputs"][0]["path"] == str(out)
    assert sorted(hub.downloaded("openai/clip-vit-large-patch14-336")) == sorted(META | {"pytorch_model.bin"})
    pixels = torch.randn(1, 3, 490, 490)
    assert torch.equal(
        image_features(load(out), pixels), image_features(load(src), pixels, interpolate_pos_encoding=True)
    )
    card = (out / "README.md").read_text()
    assert "base_model: openai/clip-vit-large-patch14-336" in card and sha in card


def test_safetensors_preferred_over_every_other_format(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    src = build(tmp_path / "src", fmt="safetensors")
    torch.save({"x": torch.zeros(1)}, src / "pytorch_model.bin")
    (src / "tf_model.h5").write_bytes(b"HDF")
    (src / "flax_model.msgpack").write_bytes(b"msgpack")
    (src / "onnx").mkdir()
    (src / "onnx" / "model.onnx").write_bytes(b"onnx")
    rid = repo_id()
    hub.add(rid, src)
    r = xcr("resize", "--model", rid, "--res", "224", "--out", tmp_path / "out", "--quiet")
    assert r.code == 0, r.err
    assert sorted(hub.downloaded(rid)) == sorted(META | {"model.safetensors"})
    assert set(tensors(tmp_path / "out")) == set(tensors(src)) - {"x"}


def test_sharded_repo(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    src = build(tmp_path / "src", fmt="sharded")
    rid = repo_id()
    hub.add(rid, src)
    r = xcr("resize", "--model", rid, "--res", "490", "--out", tmp_path / "out", "--quiet")
    assert r.code == 0, r.err
    shards = {f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)}
    assert sorted(hub.downloaded(rid)) == sorted(META | shards | {"model.safetensors.index.json"})
    assert {p.name for p in (tmp_path / "out").glob("*.safetensors")} == shards


def test_revision_pinning(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    rid = repo_id()
    old = hub.add(rid, build(tmp_path / "v1", seed=1))
    hub.add(rid, build(tmp_path / "v1", seed=1), ref="v1")
    new = hub.add(rid, build(tmp_path / "v2", seed=2))
    for rev, want_seed, want_sha in ((old, 1, old), (None, 2, new)):
        out = tmp_path / f"out-{want_seed}"
        args = ["resize", "--model", rid, "--res", "224", "--out", str(out), "--json"] + (
            ["--revision", rev] if rev else []
        )
        r = xcr(*args)
        assert r.code == 0, r.err
        assert json.loads(r.out)["revision"] == want_sha
        assert torch.equal(tensors(out)["logit_scale"], tensors(tmp_path / f"v{want_seed}")["logit_scale"])
        pos_src = tensors(tmp_path / f"v{want_seed}")[POS]
        assert torch.equal(tensors(out)[POS][0], pos_src[0])
    r = xcr("resize", "--model", rid, "--res", "224", "--out", tmp_path / "tag", "--revision", "v1", "--quiet")
    assert r.code == 0, r.err


def test_second_run_works_offline_from_the_cache(hub: HubServer, tmp_path: Path) -> None:
    rid = repo_id()
    hub.add(rid, build(tmp_path / "src", fmt="bin"))
    first = xcr_process("resize", "--model", rid, "--res", "490", "--out", str(tmp_path / "a"), "--quiet")
    assert first.returncode == 0, first.stderr
    seen = len(hub.requests)
    second = xcr_process(
        "resize", "--model", rid, "--res", "490", "--out", str(tmp_path / "b"), "--json", env={"HF_HUB_OFFLINE": "1"}
    )
    assert second.returncode == 0, second.stderr
    assert len(hub.requests) == seen, "offline means no request at all"
    assert json.loads(second.stdout)["revision"] == json.loads(json.dumps(hub.repos[rid].refs["main"]))
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == (tmp_path / "a" / "model.safetensors").read_bytes()


def test_grid_already_matching_says_so_and_writes(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    rid = repo_id()
    hub.add(rid, build(tmp_path / "src"))
    r = xcr("resize", "--model", rid, "--res", "336", "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert "already 24×24" in r.err
    assert (tmp_path / "out" / "model.safetensors").is_file()


def no_output(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".xcr-" in p.name]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xcr: error: ") and "Traceback" not in err, err
    return lines[0]


def test_repo_not_found(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    r = xcr("resize", "--model", "nobody/nothing", "--res", "490", "--out", tmp_path / "out")
    assert r.code == 2, "a wrong name is bad input"
    line = one_line(r.err)
    assert "nobody/nothing was not found" in line and "hf auth login" in line and "HF_TOKEN" in line
    no_output(tmp_path)


@pytest.mark.parametrize("command", ["resize", "inspect"])
def test_a_bare_404_is_not_found_not_try_again(
    xcr: Any, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """A mirror or proxy answers 404 with no error code: still "not found" (exit 2), never "try again later"."""
    monkeypatch.setattr(hub, "error_codes", False)
    rid = repo_id()
    hub.add(rid, build(tmp_path / "src"))
    args = ["--out", tmp_path / "out", "--res", "490"] if command == "resize" else []
    for model, revision in (("nobody/nothing", []), (rid, ["--revision", "nope"])):
        model_arg = ["--model", model] if command == "resize" else [model]
        r = xcr(command, *model_arg, *revision, *args)
        assert r.code == 2
        line = one_line(r.err)
        assert "HTTP 404 (not found)" in line and "try again" not in line and model in line
        assert ("at revision 'nope'" in line) == bool(revision)
    no_output(tmp_path)


def test_gated_repo_then_with_token(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    rid = repo_id()
    token = "hf_" + "s3cr3t" * 6
    hub.add(rid, build(tmp_path / "src"), gated=True, token=token)
    r = xcr("resize", "--model", rid, "--res", "490", "--out", tmp_path / "out")
    assert r.code == 1
    line = one_line(r.err)
    assert "gated" in line and "hf auth login" in line
    no_output(tmp_path)
    before = len(hub.requests)
    r = xcr("resize", "--model", rid, "--res", "490", "--out", tmp_path / "out", "--token", token, "--json")
    assert r.code == 0, r.err
    assert token not in r.out + r.err
    for f in (tmp_path / "out").iterdir():
        assert token.encode() not in f.read_bytes(), f.name
    sent = [req for req in hub.requests[before:] if rid in req.path]
    assert sent and all(req.auth == f"Bearer {token}" for req in sent)


def test_revision_not_found(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    rid = repo_id()
    hub.add(rid, build(tmp_path / "src"))
    r = xcr("resize", "--model", rid, "--res", "490", "--out", tmp_path / "out", "--revision", "nope")
    assert r.code == 2
    assert "revision 'nope' was not found" in one_line(r.err)
    no_output(tmp_path)


def test_no_usable_weights(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    src = build(tmp_path / "src", fmt="bin")
    (src / "pytorch_model.bin").rename(src / "tf_model.h5")
    rid = repo_id()
    hub.add(rid, src)
    r = xcr("resize", "--model", rid, "--res", "490", "--out", tmp_path / "out")
    assert r.code == 1
    line = one_line(r.err)
    assert "no usable weights (tf_model.h5)" in line and "model.safetensors" in line
    assert "tf_model.h5" not in hub.downloaded(rid)
    no_output(tmp_path)


def test_offline_and_not_cached(hub: HubServer, tmp_path: Path) -> None:
    p = xcr_process(
        "resize", "--model", repo_id(), "--res", "490", "--out", str(tmp_path / "out"), env={"HF_HUB_OFFLINE": "1"}
    )
    assert p.returncode == 1
    assert "not in the local cache and offline mode is on (HF_HUB_OFFLINE=1)" in one_line(p.stderr)
    no_output(tmp_path)


def test_hub_unreachable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    p = xcr_process(
        "resize",
        "--model",
        repo_id(),
        "--res",
        "490",
        "--out",
        str(tmp_path / "out"),
        env={"HF_ENDPOINT": f"http://127.0.0.1:{port}"},
    )
    assert p.returncode == 1
    assert "the Hub cannot be reached" in one_line(p.stderr)
    no_output(tmp_path)


@pytest.mark.parametrize("bad", ["bad id!", "a--b/c", "-x/y"])
def test_malformed_repo_id(xcr: Any, tmp_path: Path, bad: str) -> None:
    r = xcr("resize", "--model", bad, "--res", "490", "--out", tmp_path / "out")
    assert r.code == 2
    assert "is neither an existing folder nor a valid Hub repo id (owner/name)" in one_line(r.err)


def test_bad_res_fails_before_any_weight_is_downloaded(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    rid = repo_id()
    hub.add(rid, build(tmp_path / "src", fmt="bin"))
    r = xcr("resize", "--model", rid, "--res", "5", "--out", tmp_path / "out")
    assert r.code == 2 and "use at least 14" in one_line(r.err)
    assert "pytorch_model.bin" not in hub.downloaded(rid)


def test_nothing_is_written_into_the_cache_but_by_huggingface_hub(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    from huggingface_hub import constants

    rid = repo_id()
    hub.add(rid, build(tmp_path / "src"))
    r = xcr("resize", "--model", rid, "--res", "490", "--out", tmp_path / "out", "--quiet")
    assert r.code == 0, r.err
    repo_dir = Path(constants.HF_HUB_CACHE) / f"models--{rid.replace('/', '--')}"
    snapshot_files = {p.name for p in (repo_dir / "snapshots").rglob("*") if p.is_file() or p.is_symlink()}
    assert snapshot_files == META | {"model.safetensors"}


def test_license_notice_and_code_files_are_carried_from_the_hub_and_the_rest_is_named(
    hub: HubServer, tmp_path: Path
) -> None:
    """A Hub source's LICENSE, NOTICE and code are carried as a folder's are; what a run leaves
    behind (another weight format, a picture) is named in its notes, --json too."""
    from xcomposer_resize import resize

    legal = {"LICENSE": b"MIT License\n", "NOTICE": b"notice\n", "LICENSE-APACHE.txt": b"apache\n",
             "modeling_extra.py": b"# remote code\n", "tf_model.h5": b"HDF", "demo.png": b"\x89PNG"}  # fmt: skip
    rid = repo_id()
    hub.add(rid, build(tmp_path / "src", extra_files=legal))
    result = resize(rid, 490, tmp_path / "out")
    for name in ("LICENSE", "NOTICE", "LICENSE-APACHE.txt", "modeling_extra.py"):
        assert (tmp_path / "out" / name).read_bytes() == legal[name]
    assert not (tmp_path / "out" / "demo.png").exists() and not (tmp_path / "out" / "tf_model.h5").exists()
    (note,) = [n for n in result.notes if n.startswith("not carried over:")]
    assert "tf_model.h5 (weights in other formats, at the old size)" in note
    assert "demo.png (not downloaded from the Hub: xcr downloads the weights it reads" in note
    assert "LICENSE" not in note and "demo.png" in json.dumps(result.to_json()["notes"])


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_hub_unreachable_with_the_source_cached(hub: HubServer, tmp_path: Path) -> None:
    """docs/hub.md: when the Hub cannot be reached, xcr uses the snapshot already cached."""
    rid = repo_id()
    sha = hub.add(rid, build(tmp_path / "src", fmt="bin"))
    first = xcr_process("resize", "--model", rid, "--res", "490", "--out", str(tmp_path / "a"), "--quiet")
    assert first.returncode == 0, first.stderr
    seen = len(hub.requests)
    args = ["resize", "--model", rid, "--res", "490", "--out", str(tmp_path / "b"), "--json"]
    second = xcr_process(*args, env={"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"})
    assert second.returncode == 0, second.stderr
    assert len(hub.requests) == seen
    data = json.loads(second.stdout)
    assert data["ok"] is True and data["source"] == rid and data["revision"] == sha
    for name in ("model.safetensors", "config.json", "preprocessor_config.json"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
    card = (tmp_path / "b" / "README.md").read_text()
    assert f"base_model: {rid}" in card and sha in card


@pytest.mark.parametrize("how", ["HF_TOKEN", "saved login"])
def test_the_default_token_is_hf_token_or_the_saved_login(hub: HubServer, tmp_path: Path, how: str) -> None:
    """README: --token defaults to HF_TOKEN or the login `hf auth login` saved (HF_HOME/token)."""
    token = "hf_" + uuid.uuid4().hex
    rid = repo_id()
    hub.add(rid, build(tmp_path / "src"), token=token)  # private: without the token the Hub says not found
    home = tmp_path / "hf-home"
    home.mkdir()
    env = {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub")}
    args = ["resize", "--model", rid, "--res", "490", "--json"]
    without = xcr_process(*args, "--out", str(tmp_path / "refused"), env=env)
    assert without.returncode == 2 and f"repository {rid} was not found" in one_line(without.stderr)
    if how == "HF_TOKEN":
        env["HF_TOKEN"] = token
    else:
        (home / "token").write_text(token)  # where `hf auth login` saves it (huggingface_hub's HF_TOKEN_PATH)
    before = len(hub.requests)
    p = xcr_process(*args, "--out", str(tmp_path / "out"), env=env)
    assert p.returncode == 0, p.stderr
    sent = [r for r in hub.requests[before:] if rid in r.path]
    assert sent and all(r.auth == f"Bearer {token}" for r in sent)
    assert token not in p.stdout + p.stderr
    for f in (tmp_path / "out").iterdir():
        assert token.encode() not in f.read_bytes(), f.name


def test_a_folder_inside_a_hub_cache_names_its_repo_and_commit(xcr: Any, hub: HubServer, tmp_path: Path) -> None:
    """docs/hub.md: a local folder `…/models--owner--name/snapshots/SHA` (the real cache layout, its
    files links into blobs/) is recognised: its repo id and commit go into the model card."""
    from huggingface_hub import snapshot_download

    rid = repo_id()
    sha = hub.add(rid, build(tmp_path / "src"))
    folder = Path(snapshot_download(rid))
    assert folder.parent.name == "snapshots" and folder.name == sha and (folder / "config.json").is_symlink()
    r = xcr("resize", "--model", folder, "--res", 490, "--out", tmp_path / "out", "--quiet")
    assert r.code == 0, r.err
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"base_model: {rid}" in card
    assert f"`{rid}` at revision `{sha}`" in card
    assert str(folder) not in card and str(Path(os.environ["HF_HUB_CACHE"])) not in card, "no local paths"
