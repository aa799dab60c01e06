"""Where outputs go and how they land: path checks, temporary sibling folders, atomic rename.

An output is written to `.NAME.xcr-tmp-PID` beside its final path and renamed into place
only when complete, so a failed, interrupted or killed run leaves nothing at the output path.
`--force` renames an existing output aside, renames the new one in, then deletes the old.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from .errors import OutputError, UsageError

TMP_TAG = ".xcr-tmp-"
OLD_TAG = ".xcr-old-"


def default_name(source_name: str, old_res: int, new_res: int) -> str:
    """`clip-vit-large-patch14-336` → `clip-vit-large-patch14-490`; without the old resolution
    in the name, `-490` is appended."""
    hits = list(re.finditer(rf"(?<!\d){old_res}(?!\d)", source_name))
    if hits:
        m = hits[-1]
        return source_name[: m.start()] + str(new_res) + source_name[m.end() :]
    return f"{source_name}-{new_res}"


def hub_cache_dir() -> Path:
    """The hub cache as huggingface_hub resolves it (HF_HUB_CACHE, HF_HOME, ...)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def check_output(out: Path, source: Path, force: bool) -> None:
    """Refuse outputs that would overwrite work, touch the source or land in a hub cache."""
    out_r, src_r = out.resolve(), source.resolve()
    if out_r == src_r or src_r in out_r.parents:
        raise UsageError(f"--out {out} is inside the source folder {source}; choose a folder outside it")
    if out_r in src_r.parents:
        raise UsageError(f"--out {out} contains the source folder {source}; choose another --out")
    cache = hub_cache_dir().resolve()
    if out_r == cache or cache in out_r.parents or any(p.name.startswith("models--") for p in out_r.parents):
        raise UsageError(
            f"--out {out} is inside a Hugging Face cache, which only huggingface_hub may write; choose another --out"
        )
    if out_r.exists():
        if not out_r.is_dir() and not out_r.is_file():
            raise UsageError(f"--out {out} exists and is neither a folder nor a file; choose another --out")
        if not force and (out_r.is_file() or any(out_r.iterdir())):
            raise UsageError(f"{out} already exists and is not empty; pass --force to replace it")
    parent = _existing_parent(out_r)
    if not parent.is_dir():
        raise UsageError(f"cannot create {out}: {parent} is a file, not a folder; choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {parent}: permission denied; choose another --out")


def _existing_parent(path: Path) -> Path:
    for p in path.parents:
        if p.exists():
            return p
    return Path("/")


def temp_dir_for(out: Path) -> Path:
    """Create and return an empty temporary sibling of `out`, cleaning stale ones first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    tmp = out.parent / f".{out.name}{TMP_TAG}{os.getpid()}"
    if tmp.exists():
        remove(tmp)
    tmp.mkdir()
    return tmp


def clean_stale(out: Path) -> None:
    """Remove temporaries of `out` left by runs that no longer exist (killed, power loss)."""
    if not out.parent.is_dir():
        return
    for tag in (TMP_TAG, OLD_TAG):
        prefix = f".{out.name}{tag}"
        for entry in out.parent.iterdir():
            if entry.name.startswith(prefix) and not _alive(entry.name[len(prefix) :]):
                remove(entry)


def _alive(pid_text: str) -> bool:
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def land(tmp: Path, out: Path) -> None:
    """Rename the complete `tmp` to `out`; an existing `out` is replaced only once `tmp` is in."""
    if not out.exists() and not out.is_symlink():
        os.rename(tmp, out)
        return
    old = out.parent / f".{out.name}{OLD_TAG}{os.getpid()}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    remove(old)


def remove(path: Path) -> None:
    """Delete a file, link or folder tree; missing is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise OutputError(f"cannot remove {path}: {e.strerror or e}") from e
