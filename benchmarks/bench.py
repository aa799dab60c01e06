"""Benchmarks for `xcr resize` against `cp -r` and the transformers load-resize-save round trip.

Builds replicas of real shapes with random weights, then measures each command in a child
process, alternating, several times: wall time (median) and peak RSS (from wait4). Prints a
table and, with --write, writes it to docs/performance.md with the machine it ran on.

    make bench                                   # full size: CLIP-L/14-336 (1.71 GB), SigLIP-so400m (3.5 GB), 6 GB sharded
    python benchmarks/bench.py --tiny --runs 1   # a tiny replica, to keep this script working
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROUND_TRIP = """
import sys, torch
from transformers import CLIPModel
src, out, res = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = CLIPModel.from_pretrained(src)
emb = model.vision_model.embeddings
g = res // emb.patch_size
with torch.no_grad():
    table = emb.interpolate_pos_encoding(torch.zeros(1, 1 + g * g, emb.embed_dim), res, res)[0]
emb.position_embedding = torch.nn.Embedding(table.shape[0], table.shape[1])
emb.position_embedding.weight.data.copy_(table)
emb.num_patches, emb.num_positions, emb.image_size = g * g, g * g + 1, res
emb.register_buffer("position_ids", torch.arange(g * g + 1).expand((1, -1)), persistent=False)
model.config.vision_config.image_size = res
model.save_pretrained(out)
"""

# the exact conversion's floor: a fresh python, torch imported, the one table resampled, no teardown
FLOOR = """
import os, sys, torch
import torch.nn.functional as F
g, width = int(sys.argv[1]), int(sys.argv[2])
x = torch.randn(1, width, 24, 24)
F.interpolate(x, size=(g, g), mode="bicubic", align_corners=False)
os._exit(0)
"""


# openai/clip-vit-large-patch14-336
REAL_VISION = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24,
               "image_size": 336, "patch_size": 14}  # fmt: skip
REAL_TEXT = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "vocab_size": 49408,
}


@dataclass
class Case:
    name: str
    source: Path
    bytes: int
    round_trip: bool
    res: int = 490  # the --res the case converts to


# google/siglip-so400m-patch14-384: 384 px with 14-px patches (27×27), no class token; LLaVA-OneVision
# and TinyChart experiments run it at 768 (54×54)
SO400M_VISION = {"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16, "num_hidden_layers": 27,
                 "image_size": 384, "patch_size": 14}  # fmt: skip
SO400M_TEXT = {"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16, "num_hidden_layers": 27,
               "vocab_size": 32000, "max_position_embeddings": 64}  # fmt: skip


def write_siglip(folder: Path, tiny: bool) -> int:
    """A SiglipModel with so400m's shapes (or a tiny one) as transformers saves it, random weights."""
    from safetensors.torch import save_file
    from transformers import SiglipConfig, SiglipModel

    from tests.builders import VISION

    vision = dict(VISION, image_size=384, patch_size=14) if tiny else SO400M_VISION
    text = dict(VISION, vocab_size=99, max_position_embeddings=16) if tiny else SO400M_TEXT
    config = SiglipConfig(text_config=text, vision_config=vision)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in SiglipModel(config).state_dict().items()}
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    square = {"height": 384, "width": 384}
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "SiglipImageProcessor", "size": square, "do_resize": True})
    )
    save_file({k: v.contiguous() for k, v in random_state(shapes).items()}, str(folder / "model.safetensors"))
    return sum(f.stat().st_size for f in folder.iterdir())


def clip_shapes(tiny: bool) -> dict[str, tuple[int, ...]]:
    """Names and shapes of openai/clip-vit-large-patch14-336 (CLIPModel), or a tiny one."""
    from transformers import CLIPConfig, CLIPModel

    if tiny:
        from tests.builders import TEXT, VISION

        config = CLIPConfig(
            text_config=TEXT, vision_config=dict(VISION, image_size=336, patch_size=14), projection_dim=8
        )
    else:
        config = CLIPConfig(text_config=REAL_TEXT, vision_config=REAL_VISION, projection_dim=768)
    with torch.device("meta"):
        model = CLIPModel(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    shapes["vision_model.embeddings.position_ids"] = (1, shapes["vision_model.embeddings.position_embedding.weight"][0])
    shapes["text_model.embeddings.position_ids"] = (1, shapes["text_model.embeddings.position_embedding.weight"][0])
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for name, shape in shapes.items():
        if name.endswith("position_ids"):
            sd[name] = torch.arange(shape[1]).expand((1, -1))
        else:
            sd[name] = torch.randn(shape, generator=gen) * 0.02
    return sd


def write_folder(folder: Path, sd: dict[str, torch.Tensor], fmt: str, tiny: bool, shard_bytes: int = 0) -> int:

    from safetensors.torch import save_file

    from tests.builders import TOKENIZER_FILES, openai_config, preprocessor_config

    folder.mkdir(parents=True)
    config = openai_config()
    if not tiny:
        for key, sizes in (("vision_config", REAL_VISION), ("text_config", REAL_TEXT)):
            config[key].update(sizes, projection_dim=768)
            config[key + "_dict"].update(sizes, projection_dim=768)
        config["projection_dim"] = 768
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor_config()))
    for name, text in TOKENIZER_FILES.items():
        (folder / name).write_text(text)
    if fmt == "bin":
        torch.save(sd, folder / "pytorch_model.bin")
    elif fmt == "safetensors":
        save_file(
            {k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"), metadata={"format": "pt"}
        )
    else:  # sharded
        shards: list[dict[str, torch.Tensor]] = [{}]
        size = 0
        for k, v in sd.items():
            n = v.numel() * v.element_size()
            if shards[-1] and size + n > shard_bytes:
                shards.append({})
                size = 0
            shards[-1][k] = v.contiguous()
            size += n
        weight_map = {}
        for i, part in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(part, str(folder / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in part})
        total = sum(v.numel() * v.element_size() for v in sd.values())
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
        )
    return sum(f.stat().st_size for f in folder.iterdir())


# llava-hf/llava-1.5-7b-hf: CLIP-L/14-336, a 2-layer projector, Llama-2-7B; fp16, the llava-hf names
LLAMA_7B = {"hidden": 4096, "intermediate": 11008, "layers": 32, "vocab": 32064}


def write_llava(folder: Path, tiny: bool) -> int:
    """A LLaVA-1.5-7B-shaped whole checkpoint (about 14 GB in fp16, 5 GB shards), one tensor in memory at
    a time: the vision tower's tensors and the language model's, written shard by shard."""
    from safetensors.torch import save_file

    llm = {"hidden": 64, "intermediate": 128, "layers": 2, "vocab": 256} if tiny else LLAMA_7B
    h, m = llm["hidden"], llm["intermediate"]
    shapes = {f"vision_tower.{k}": s for k, s in clip_shapes(tiny).items() if k.startswith("vision_model.")}
    width = shapes["vision_tower.vision_model.embeddings.position_embedding.weight"][1]
    shapes.update({"multi_modal_projector.linear_1.weight": (h, width), "multi_modal_projector.linear_2.weight": (h, h),
                   "language_model.model.embed_tokens.weight": (llm["vocab"], h),
                   "language_model.lm_head.weight": (llm["vocab"], h)})  # fmt: skip
    for i in range(llm["layers"]):
        at = f"language_model.model.layers.{i}."
        shapes.update({at + f"self_attn.{p}_proj.weight": (h, h) for p in "qkvo"})
        shapes.update({at + "mlp.gate_proj.weight": (m, h), at + "mlp.up_proj.weight": (m, h),
                       at + "mlp.down_proj.weight": (h, m), at + "input_layernorm.weight": (h,)})  # fmt: skip
    folder.mkdir(parents=True)
    limit, gen = (5 * 10**9 if not tiny else 10**6), torch.Generator().manual_seed(2)
    shards: list[list[str]] = [[]]
    size = 0
    for name, shape in shapes.items():
        n = 2 * int(torch.Size(shape).numel())
        if shards[-1] and size + n > limit:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += n
    weight_map = {}
    for i, names in enumerate(shards, 1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        part = {}
        for name in names:
            if name.endswith("position_ids"):
                part[name] = torch.arange(shapes[name][1]).expand((1, -1)).contiguous()
            else:
                part[name] = torch.empty(shapes[name], dtype=torch.float16).normal_(0, 0.02, generator=gen)
        save_file(part, str(folder / file), metadata={"format": "pt"})
        weight_map.update({k: file for k in names})
        del part
    index = {"metadata": {"total_size": sum(2 * int(torch.Size(s).numel()) for s in shapes.values())},
             "weight_map": weight_map}  # fmt: skip
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    vision = dict(REAL_VISION, model_type="clip_vision_model", projection_dim=768) if not tiny else {
        **clip_vision_tiny(), "model_type": "clip_vision_model"}  # fmt: skip
    config = {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava", "image_token_index": 32000,
              "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "torch_dtype": "float16",
              "vision_config": vision, "text_config": {"model_type": "llama", "hidden_size": h,
              "intermediate_size": m, "num_hidden_layers": llm["layers"], "vocab_size": llm["vocab"]}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    side = vision["image_size"]
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "CLIPImageProcessor",
        "size": {"shortest_edge": side}, "crop_size": {"height": side, "width": side}, "do_center_crop": True}))  # fmt: skip
    return sum(f.stat().st_size for f in folder.iterdir())


def clip_vision_tiny() -> dict[str, int]:
    from tests.builders import VISION

    return dict(VISION, image_size=336, patch_size=14)


def build(work: Path, tiny: bool, only: str = "") -> list[Case]:
    """The replicas whose names contain one of the comma-separated texts in `only` (the sharded ones'
    names before their sizes are known: "GB sharded safetensors", "LLaVA-1.5-7B-shaped")."""

    def wanted(name: str) -> bool:
        return not only or any(o in name for o in only.split(","))

    shapes = clip_shapes(tiny)
    sd = random_state(shapes)
    label = "tiny CLIP replica " if tiny else "CLIP-L/14-336 "
    cases = []
    if wanted(f"{label}safetensors"):
        cases.append(Case(f"{label}safetensors", work / "st", write_folder(work / "st", sd, "safetensors", tiny), True))
    if wanted(f"{label}pytorch_model.bin"):
        cases.append(Case(f"{label}pytorch_model.bin", work / "bin", write_folder(work / "bin", sd, "bin", tiny), True))
    siglip = f"{'tiny ' if tiny else ''}SigLIP-so400m-patch14-384 safetensors, --res 768"
    if wanted(siglip):
        cases.append(Case(siglip, work / "siglip", write_siglip(work / "siglip", tiny), False, res=768))
    if wanted("GB sharded safetensors"):
        cases.append(sharded(work, tiny, sd))
    del sd
    if wanted("LLaVA-1.5-7B-shaped"):
        size = write_llava(work / "llava", tiny)
        cases.append(Case(f"LLaVA-1.5-7B-shaped, {size / 1e9:.1f} GB fp16 sharded, --res 672", work / "llava", size,
                          False, res=672))  # fmt: skip
    return cases


def sharded(work: Path, tiny: bool, sd: dict[str, torch.Tensor]) -> Case:
    """A multi-GB sharded checkpoint: the CLIP tensors plus filler layers, in 2 GB shards."""
    target = 6 * 10**9 if not tiny else 3 * 10**6
    total = sum(v.numel() * v.element_size() for v in sd.values())
    gen = torch.Generator().manual_seed(1)
    i = 0
    while total < target:
        t = torch.randn(4096, 4096 if not tiny else 64, generator=gen)
        sd[f"extra.{i}.weight"] = t
        total += t.numel() * 4
        i += 1
    size = write_folder(work / "sharded", sd, "sharded", tiny, shard_bytes=2 * 10**9 if not tiny else 10**6)
    return Case(f"{size / 1e9:.1f} GB sharded safetensors", work / "sharded", size, False)


def build_in_child(work: Path, tiny: bool, only: str) -> list[Case]:
    """build() in a child process: the replicas' 6 GB of tensors never live in this one, whose
    freed memory the VM would hand back to the host, making the next commands fault it back in."""
    cmd = [sys.executable, __file__, "--build-into", str(work), "--cases", only, *(["--tiny"] if tiny else [])]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return [Case(**{**c, "source": Path(c["source"])}) for c in json.loads(done.stdout.splitlines()[-1])]


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process.

    The child is started through /usr/bin/time when it exists: a child forked straight from this
    (large) process would count our own memory in its peak RSS until it execs.
    """
    timer = shutil.which("time", path="/usr/bin:/bin")
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        full = [timer, "-f", "%M", "-o", rss_file.name, *cmd] if timer else cmd
        start = time.perf_counter()
        proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if status != 0:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"{' '.join(cmd)} failed ({status}): {err[-2000:]}")
        rss = int(rss_file.read().strip().splitlines()[-1]) * 1024 if timer else usage.ru_maxrss * 1024
    return wall, max(rss, orphans_peak())


def subreaper() -> None:
    """Make this process the reaper of its descendants' orphans (Linux): xcr does not wait for its torch
    worker to end (it exits at EOF), so the worker outlives xcr for a moment, is not counted in the
    peak RSS /usr/bin/time reports, and would be adopted by init. Adopted here instead, it is reaped by
    `orphans_peak`, which reads its peak."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def orphans_peak() -> int:
    """Wait for every orphan adopted since the last call (see `subreaper`); the largest peak RSS (bytes)."""
    peak = 0
    while True:
        try:
            _, _, usage = os.wait4(-1, 0)
        except ChildProcessError:
            return peak
        peak = max(peak, usage.ru_maxrss * 1024)


def evict(folder: Path) -> None:
    """Drop `folder`'s files from the page cache (clean pages only: call after os.sync())."""
    if not hasattr(os, "posix_fadvise"):
        raise SystemExit("--cache cold needs posix_fadvise (Linux); use --cache warm")
    for path in folder.iterdir():
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def warm_allocator() -> None:
    """Touch and free up to 2 GiB, so the next command does not pay the hypervisor's first-touch
    cost for memory the VM returned to the host (free page reporting): whichever command ran
    first after a pause paid up to 1 s for it, at random."""
    try:
        available = next(
            int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemAvailable")
        )
    except (OSError, StopIteration):
        return
    block = bytearray(min(2 << 30, available // 8))
    del block


def prepare(work: Path, source: Path, cache: str, tiny: bool) -> None:
    for out in ("cp-out", "xcr-out", "rt-out"):
        shutil.rmtree(work / out, ignore_errors=True)
    os.sync()  # no command pays for the previous one's writeback
    if cache == "cold":
        evict(source)
    else:
        for path in source.iterdir():  # read it into the page cache
            if path.is_file():
                with open(path, "rb") as f:
                    while f.read(64 << 20):
                        pass
    if not tiny:
        warm_allocator()


def measure(cases: list[Case], work: Path, runs: int, caches: list[str], tiny: bool) -> list[dict[str, object]]:
    xcr = [sys.executable, "-m", "xcomposer_resize", "resize", "--quiet", "--force"]
    rows = []
    for case in cases:
        for cache in caches:
            commands = {
                "cp -r": ["cp", "-r", str(case.source), str(work / "cp-out")],
                "xcr resize": [
                    *xcr,
                    "--res",
                    str(case.res),
                    "--model",
                    str(case.source),
                    "--out",
                    str(work / "xcr-out"),
                ],
            }
            if case.round_trip:
                commands["transformers round trip"] = [
                    sys.executable,
                    "-c",
                    ROUND_TRIP,
                    str(case.source),
                    str(work / "rt-out"),
                    "490",
                ]
            got: dict[str, list[tuple[float, int]]] = {k: [] for k in commands}
            # cp and xcr alternate, so drift hits both alike; the round trip runs on its own
            # afterwards: whatever follows it (2 GB of memory and 1.7 GB of writes freed) was slowed
            # by up to 2x here, which would flatter the command that did not follow it
            for group in (["cp -r", "xcr resize"], [n for n in commands if n not in ("cp -r", "xcr resize")]):
                for _ in range(runs if group else 0):
                    for name in group:
                        prepare(work, case.source, cache, tiny)
                        got[name].append(run(commands[name]))
            cp = statistics.median(w for w, _ in got["cp -r"])
            for name, samples in got.items():
                wall = statistics.median(w for w, _ in samples)
                rss = max(r for _, r in samples)
                rows.append(
                    {"case": case.name, "cache": cache, "command": name, "wall": wall, "ratio": wall / cp, "rss": rss}
                )
    for args in (["--help"], ["resize", "--help"]):
        walls = [run([sys.executable, "-m", "xcomposer_resize", *args])[0] for _ in range(max(runs, 3))]
        rows.append(
            {
                "case": "—",
                "cache": "—",
                "command": "xcr " + " ".join(args),
                "wall": statistics.median(walls),
                "ratio": None,
                "rss": None,
            }
        )
    return rows


def measure_forms(case: Case, work: Path, runs: int, tiny: bool) -> list[dict[str, object]]:
    """The output forms of issue 10 on one source (in the page cache): several resolutions in one run
    against separate runs, --dtype casts, --vision-only, --fsync, and an up-to-date re-run."""
    base = [sys.executable, "-m", "xcomposer_resize", "resize", "--model", str(case.source), "--quiet"]
    out = work / "forms"

    def xcr(*args: str, force: bool = True) -> list[str]:
        return [*base, *args, *(["--force"] if force else [])]

    forms: dict[str, list[list[str]]] = {
        "--res 490": [xcr("--res", "490", "--out", str(out / "a"))],
        "--res 224 --res 490 --res 560 (one run)": [
            xcr("--res", "224", "--res", "490", "--res", "560", "--out", str(out / "m-{res}"))
        ],
        "--res 224, --res 490, --res 560 (three runs)": [
            xcr("--res", r, "--out", str(out / f"s-{r}")) for r in ("224", "490", "560")
        ],
        "--res 490 --dtype bfloat16": [xcr("--res", "490", "--dtype", "bfloat16", "--out", str(out / "bf16"))],
        "--res 490 --dtype float16": [xcr("--res", "490", "--dtype", "float16", "--out", str(out / "fp16"))],
        "--res 490 --vision-only": [xcr("--res", "490", "--vision-only", "--out", str(out / "vision"))],
        "--res 490 --fsync": [xcr("--res", "490", "--fsync", "--out", str(out / "fsync"))],
        "--res 490, output up to date": [xcr("--res", "490", "--out", str(work / "up-to-date"), force=False)],
    }
    run(forms["--res 490, output up to date"][0])  # made once; every measured run finds it up to date
    got: dict[str, list[tuple[float, int]]] = {k: [] for k in forms}
    for _ in range(runs):
        for name, commands in forms.items():
            shutil.rmtree(out, ignore_errors=True)
            prepare(work, case.source, "warm", tiny)
            samples = [run(c) for c in commands]
            got[name].append((sum(w for w, _ in samples), max(r for _, r in samples)))
    single = statistics.median(w for w, _ in got["--res 490"])
    return [
        {"case": case.name, "cache": "warm", "command": f"xcr resize {name}", "wall": statistics.median(w for w, _ in s),
         "ratio": statistics.median(w for w, _ in s) / single, "rss": max(r for _, r in s)}
        for name, s in got.items()
    ]  # fmt: skip


COW_KINDS = {"xfs": ["-m", "reflink=1"], "btrfs": []}


def mount_cow(kind: str, work: Path, size: int) -> tuple[Path | None, str]:
    """A fresh loop-mounted file system of `kind` under `work` (its image sparse, `size` bytes), or None
    and why not (not root, no mkfs, no loop devices: mounting is not allowed everywhere)."""
    mkfs = shutil.which(f"mkfs.{kind}")
    if os.geteuid() != 0:
        return None, "not root"
    if mkfs is None:
        return None, f"mkfs.{kind} is not installed"
    image, mnt = work / f"{kind}.img", work / f"mnt-{kind}"
    with open(image, "wb") as f:
        f.truncate(size)
    mnt.mkdir()
    for cmd in ([mkfs, "-q", *COW_KINDS[kind], str(image)], ["mount", "-o", "loop", str(image), str(mnt)]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"{' '.join(cmd[:2])} failed: {done.stderr.strip()[:160]}"
    return mnt, ""


def free_bytes(path: Path) -> int:
    os.sync()
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def measure_cow(cases: list[Case], work: Path, runs: int, tiny: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Issue 20: on a loop-mounted XFS (reflink) and btrfs, `xcr resize` against `cp -r --reflink=always`
    and against the floor of an exact conversion (python, import torch, one interpolate), alternating,
    the source in the page cache; and the free space each command takes (`statvfs` after `sync`)."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    size = sum(c.bytes for c in cases) * 3 + (1 << 30)
    for kind in COW_KINDS:
        mnt, why = mount_cow(kind, work, size)
        if mnt is None:
            notes.append(f"{kind} skipped: {why}")
            continue
        try:
            for case in cases:
                subprocess.run(["cp", "-r", str(case.source), str(mnt / "src")], check=True)
                rows += _measure_cow_case(case, kind, mnt, runs, tiny)
                shutil.rmtree(mnt / "src")
        finally:
            unmount(mnt, notes)
    return rows, notes


def unmount(mnt: Path, notes: list[str]) -> None:
    """Unmount `mnt`, retrying for a few seconds while it is busy (a process that has not quite ended),
    then lazily: never leave a mount behind whose image the scratch folder's removal then deletes."""
    for _ in range(10):
        done = subprocess.run(["umount", str(mnt)], capture_output=True, text=True)
        if done.returncode == 0:
            return
        time.sleep(0.5)
    lazy = subprocess.run(["umount", "-l", str(mnt)], capture_output=True, text=True)
    notes.append(f"umount {mnt.name} failed ({done.stderr.strip()[:160]}); "
                 f"{'detached lazily' if lazy.returncode == 0 else 'left mounted'}")  # fmt: skip


def _measure_cow_case(case: Case, kind: str, mnt: Path, runs: int, tiny: bool) -> list[dict[str, Any]]:
    src = mnt / "src"
    width, grid = (1152, 54) if "SigLIP" in case.name else (32 if tiny else 1024, case.res // 14)
    commands = {
        "cp -r --reflink=always": ["cp", "-r", "--reflink=always", str(src), str(mnt / "cp-out")],
        "floor (python, import torch, one interpolate)": [sys.executable, "-c", FLOOR, str(grid), str(width)],
        "xcr resize": [sys.executable, "-m", "xcomposer_resize", "resize", "--quiet", "--force", "--res",
                       str(case.res), "--model", str(src), "--out", str(mnt / "xcr-out")],
    }  # fmt: skip
    got: dict[str, list[tuple[float, int, int]]] = {k: [] for k in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            prepare(mnt, src, "warm", tiny)
            before = free_bytes(mnt)
            wall, rss = run(cmd)
            got[name].append((wall, rss, before - free_bytes(mnt)))
    floor = [w for w, _, _ in got["floor (python, import torch, one interpolate)"]]
    cp = statistics.median(w for w, _, _ in got["cp -r --reflink=always"])
    return [
        {"case": case.name, "fs": kind, "command": name, "wall": statistics.median(w for w, _, _ in s),
         "floor": paired([w for w, _, _ in s], floor), "cp": statistics.median(w for w, _, _ in s) / cp,
         "space": max(u for _, _, u in s), "bytes": case.bytes, "rss": max(r for _, r, _ in s)}
        for name, s in got.items()
    ]  # fmt: skip


def paired(walls: list[float], floors: list[float]) -> tuple[float, float, float]:
    """The ratio of each run to the floor run beside it: (median, lower quartile, upper quartile).
    torch's import alone varies ±20% between runs here; the ratio of neighbours cancels what drifts."""
    ratios = [w / f for w, f in zip(walls, floors, strict=True)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    low, _, high = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), low, high


def cow_table(rows: list[dict[str, Any]], notes: list[str]) -> str:
    lines = [
        "| source | file system | command | wall (median) | vs floor (quartiles) | vs cp | extra space (max) "
        "| peak RSS |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        share = f"{r['space'] / 2**20:,.1f} MiB ({100 * r['space'] / r['bytes']:.2f}%)"
        mid, low, high = r["floor"]
        lines.append(
            f"| {r['case']} | {r['fs']} | {r['command']} | {r['wall']:.3f} s | {mid:.2f}× ({low:.2f}–{high:.2f}) "
            f"| {r['cp']:.0f}× | {share} | {r['rss'] / 2**20:,.0f} MiB |"
        )
    return "\n".join(lines + [f"\n{n}" for n in notes])


def forms_table(rows: list[dict[str, object]]) -> str:
    lines = ["| source | command | wall (median) | vs `--res 490` | peak RSS |", "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['command']} | {r['wall']:.2f} s | {r['ratio']:.2f}× | {r['rss'] / 2**20:,.0f} MiB |"
        )
    return "\n".join(lines)


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| source | source in page cache | command | wall (median) | vs `cp -r` | peak RSS |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] is not None else "—"
        rss = f"{r['rss'] / 2**20:,.0f} MiB" if r["rss"] is not None else "—"
        cache = {"warm": "yes", "cold": "no"}.get(str(r["cache"]), "—")
        lines.append(f"| {r['case']} | {cache} | {r['command']} | {r['wall']:.2f} s | {ratio} | {rss} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}, torch {torch.__version__}, {platform.system()} {platform.release()}"


def compiled() -> None:
    """Byte-compile the xcr that the runs import, as installing a wheel does: where PYTHONDONTWRITEBYTECODE
    is set (as in some containers), an uninstalled checkout would be recompiled on every run, which no
    installed copy is (torch, in site-packages, is compiled already)."""
    import xcomposer_resize

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(xcomposer_resize.__file__).parent)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per command (median is reported)")
    parser.add_argument("--cow-runs", type=int, default=15, help="runs per command on XFS and btrfs (default 15)")
    parser.add_argument("--tiny", action="store_true", help="tiny replicas, to keep the script working")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--write", type=Path, default=None, help="write the measured tables into this Markdown file")
    parser.add_argument(
        "--cache",
        default="warm,cold",
        help="source in the page cache (warm), evicted before every command (cold), or both (default)",
    )
    parser.add_argument(
        "--only", default="ext4,forms,cow", help="which tables: ext4 (the work folder), forms, cow (XFS, btrfs)"
    )
    parser.add_argument(
        "--cases",
        default="",
        help="only the sources whose name contains one of these comma-separated texts (safetensors, bin, SigLIP, sharded, LLaVA)",
    )
    parser.add_argument("--build-into", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_into:  # the child that builds the replicas; prints them as JSON
        print(json.dumps([{**vars(c), "source": str(c.source)} for c in build(args.build_into, args.tiny, args.cases)]))
        return

    only = set(args.only.split(","))
    caches = [c for c in args.cache.split(",") if c]
    if not caches or set(caches) - {"warm", "cold"}:
        parser.error("--cache takes warm, cold or warm,cold")
    if not only or only - {"ext4", "forms", "cow"}:
        parser.error("--only takes ext4, forms, cow or a comma-separated list of them")
    compiled()
    subreaper()
    work = Path(tempfile.mkdtemp(prefix="xcr-bench-", dir=args.work))
    try:
        cases = build_in_child(work, args.tiny, args.cases)
        rows = measure(cases, work, args.runs, caches, args.tiny) if "ext4" in only else []
        forms = measure_forms(cases[0], work, args.runs, args.tiny) if "forms" in only and cases else []
        cow = [c for c in cases if "SigLIP" not in c.name and "bin" not in c.name]  # CLIP-L and the sharded ones
        cow_rows, cow_notes = measure_cow(cow, work, args.cow_runs, args.tiny) if "cow" in only else ([], [])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    blocks = {}
    if only & {"ext4", "forms"}:
        text = table(rows) + "\n\nOutput forms (issue 10), the same source in the page cache:\n\n" + forms_table(forms)
        blocks["bench"] = main_block(text, args.runs)
    if "cow" in only:
        blocks["bench:cow"] = cow_block(cow_table(cow_rows, cow_notes), args.cow_runs)
    print("\n\n".join(blocks.values()))
    if args.write:
        write(args.write, blocks)


def main_block(text: str, runs: int) -> str:
    return (
        "`xcr resize --res 490` (SigLIP-so400m: `--res 768`) side by side with `cp -r` of the same source and\n"
        "with the transformers round trip (`CLIPModel.from_pretrained`, `interpolate_pos_encoding`,\n"
        "`save_pretrained`): cp and xcr\n"
        f"alternating, then the round trip, {runs} runs each, median wall time, peak RSS of the child\n"
        "(`/usr/bin/time`). Random weights with the real shapes, built in a child process; xcr byte-compiled\n"
        "first, as an installed copy is. Before every\n"
        "command: the outputs are deleted, dirty pages flushed (`sync`), the source read into the page cache\n"
        "(yes) or evicted from it with `posix_fadvise(DONTNEED)` (no), and 2 GiB of memory touched and freed.\n"
        "Python, torch and xcr stay cached. Targets (issue 4): ≤ 1.15× `cp -r` and ≤ 350 MiB for safetensors;\n"
        "≤ 1.6× and ≤ 700 MiB for pytorch_model.bin; ≤ 0.3 s for `--help`.\n\n"
        f"{text}\n\n"
        f"Machine: {machine()}.\n\n"
        f"Reproduce: `make bench` (or `python benchmarks/bench.py --runs {runs} --only ext4,forms "
        "--write docs/performance.md`)."
    )


def cow_block(text: str, runs: int) -> str:
    return (
        "The CLIP-L replica, the 6 GB sharded one and the 7B LLaVA, each copied into a freshly made,\n"
        "loop-mounted XFS (`mkfs.xfs -m reflink=1`) and btrfs image on this machine's ext4; cp, the floor and\n"
        f"xcr alternating, {runs} runs each, the source in the page cache. The floor is what any exact\n"
        "conversion needs: a fresh python, `import torch`, one bicubic `F.interpolate` of the table, exit\n"
        'without teardown. "vs floor" is the median (and quartiles) of each run\'s ratio to the floor run\n'
        "just before it, which cancels the machine's drift; extra space is the most free space (`statvfs`\n"
        "after `sync`) one run took; peak RSS counts xcr's torch worker. Target (issue 20): ≤ 1.1× the floor\n"
        "and < 5% of the checkpoint in extra space on XFS.\n\n"
        f"{text}\n\n"
        f"Machine: {machine()}.\n\n"
        f"Reproduce: `make bench` (or `python benchmarks/bench.py --only cow --cow-runs {runs} "
        "--write docs/performance.md`)."
    )


def write(path: Path, blocks: dict[str, str]) -> None:
    """Replace the generated blocks of `path` that were measured (each between its markers,
    `<!-- NAME:start -->` and `<!-- NAME:end -->`); keep the prose around them and the blocks not measured."""
    text = path.read_text() if path.exists() else "# Performance\n"
    for name, block in blocks.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        generated = f"{start}\n{block}\n{end}"
        if start in text and end in text:
            text = text[: text.index(start)] + generated + text[text.index(end) + len(end) :]
        else:
            text = text.rstrip("\n") + f"\n\n{generated}\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
