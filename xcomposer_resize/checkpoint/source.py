"""Where the source comes from: a local folder, or a Hub repo id fetched with huggingface_hub.

huggingface_hub keeps its own conventions (HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN,
HF_HUB_OFFLINE); nothing here re-implements them, and nothing here writes into the cache.
From a repo's file listing only what the conversion needs is downloaded: small metadata files
first (so bad flags fail before gigabytes move), then ONE weight format, safetensors preferred.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HubError, InputError, RepoIdError, arg
from ..families import CONFIG_FILES, WEIGHT_FILES, config_name
from ..text import readable
from .weights import EXPORT_FOLDERS, STANDARD_WEIGHTS, is_plain_name, is_weight_file, pick_weights

# What a conversion downloads besides the weights it reads: configs, processor and tokenizer files,
# the model card, code (remote-code models, chat templates), and license and notice files, which
# have no suffix (LICENSE, NOTICE, COPYING)
METADATA_SUFFIXES = (".json", ".txt", ".md", ".model", ".tiktoken", ".py", ".jinja")
LEGAL = re.compile(r"(licen[cs]e|notice|copying|copyright)([-_. ].*)?", re.IGNORECASE)
LOGIN_HINT = "log in with `hf auth login` or set HF_TOKEN"


class NotFoundError(HubError):
    """The Hub has no such repository, revision or file: a name the user gave is wrong (exit 2)."""

    exit_code = 2


class RepoNotFoundError(NotFoundError):
    """The Hub has no repository of that name (or hides a private one from us)."""


@dataclass
class Source:
    """A checkpoint folder on disk and what we know of where it came from."""

    folder: Path
    display: str  # what the user asked for: a repo id, or the folder path
    name: str  # the model's name, for default output names
    repo_id: str | None = None
    revision: str | None = None  # resolved commit sha, for hub sources
    fetch: Callable[[tuple[str, ...]], None] | None = field(default=None, repr=False)
    listing: list[str] | None = None  # a hub repo's files at that commit, when the Hub answered

    def fetch_weights(self, layout: tuple[str, ...] = STANDARD_WEIGHTS) -> None:
        """Download the weights (hub sources): the first of `layout` (a family's weight files,
        preferred first) the repo has, and its shards; local folders already have them."""
        if self.fetch is not None:
            self.fetch(layout)
            self.fetch = None


def resolve_source(
    model: str, revision: str | None = None, token: str | None = None, quiet: bool = True, need_weights: bool = True
) -> Source:
    """A local folder (an existing path wins), or a Hub repo id whose metadata is fetched now.
    `need_weights`: offline, a cached snapshot without its weights will do (for `inspect`)."""
    path = Path(model).expanduser()
    try:
        exists = path.exists()
    except OSError as e:  # a name too long for the file system, a loop of links, ...
        raise InputError(f"cannot use {model[:80]}{'…' if len(model) > 80 else ''} as a folder: {e.strerror}") from e
    if exists:
        if not path.is_dir():
            raise InputError(f"{model} is a file; pass the checkpoint folder that holds config.json")
        if revision is not None:
            raise InputError(
                f"{arg('revision')} applies to Hub repo ids, but {model} is a local folder; leave {arg('revision')} out"
            )
        return local_source(path)
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model:
        raise InputError(f"{model} does not exist; give a checkpoint folder or a Hub repo id like owner/name")
    if "/" in model:
        return hub_source(model, revision, token, quiet, need_weights)
    try:  # a bare name: a folder the user mistyped, or a Hub repo without an owner (gpt2)
        return hub_source(model, revision, token, quiet, need_weights)
    except RepoNotFoundError as e:
        raise InputError(
            f"no folder or Hub repo named {model}: it is not a folder here and the Hub has no such repository; "
            "give a checkpoint folder or a Hub repo id like owner/name"
        ) from e
    except HubError as e:
        if isinstance(e, RepoIdError):
            raise
        raise HubError(f"{model} is not a folder here, and as a Hub repo id: {e.message}") from e


def local_source(path: Path) -> Source:
    """A folder; inside a hub cache (models--owner--name/snapshots/SHA) the repo id and sha are known."""
    resolved = path.resolve()
    repo_id = revision = None
    name = resolved.name
    parts = resolved.parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        repo_id = parts[-3].removeprefix("models--").replace("--", "/")
        revision = parts[-1]
        name = repo_id.split("/")[-1]
    return Source(resolved, str(resolved), name, repo_id, revision)


def _download(repo_id: str, names: list[str], revision: str | None, token: str | None, ref: str) -> Path:
    """Download `names` of `repo_id` at `ref` (the listing's commit: the files and the model card can
    never disagree, even if the branch moves meanwhile); return the snapshot folder. `revision`: as the
    user gave it, for errors."""
    from huggingface_hub import hf_hub_download

    folder = None
    for name in names:
        try:
            got = hf_hub_download(repo_id, name, revision=ref, token=token)
        except Exception as e:
            raise hub_error(e, repo_id, revision) from e
        folder = Path(got).parents[len(Path(name).parts) - 1]
    assert folder is not None
    return folder


def hub_source(repo_id: str, revision: str | None, token: str | None, quiet: bool, need_weights: bool = True) -> Source:
    """Fetch the metadata files of `repo_id` now; the weights when `fetch_weights` is called."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import disable_progress_bars  # type: ignore[attr-defined]

    _check_repo_id(repo_id)
    if quiet:
        disable_progress_bars()

    try:
        info = HfApi().model_info(repo_id, revision=revision, token=token)
    except Exception as e:
        if not _is_offline(e):
            raise hub_error(e, repo_id, revision) from e
        return _cached_source(repo_id, revision, need_weights)
    sha = info.sha or revision or "main"
    files = sorted(s.rfilename for s in (info.siblings or []))

    download = functools.partial(_download, repo_id, revision=revision, token=token, ref=sha)
    meta = [f for f in files if is_metadata(f)]
    config = _config_of(meta, repo_id, revision)
    # the config by the name the user gave, so huggingface_hub records the branch → commit ref that an
    # offline re-run looks up; it must come from the listed commit, or the branch moved under us
    folder = download([config], ref=revision or "main")
    if info.sha and folder.name != info.sha:
        raise HubError(
            f"{repo_id}@{revision or 'main'} moved to another commit while xcr was reading it "
            f"({info.sha[:12]} → {folder.name[:12]}); run again"
        )
    download([f for f in meta if f != config])
    source = Source(folder, repo_id, repo_id.split("/")[-1], repo_id, sha, listing=files)

    def fetch(layout: tuple[str, ...]) -> None:
        weights = pick_weights(files, layout)
        if weights is None:
            found = ", ".join(f for f in files if is_weight_file(f)) or "no weight files"
            reads = "model.safetensors or pytorch_model.bin, single or sharded"
            raise HubError(
                f"{repo_id} has no usable weights ({found}); xcr reads "
                + (reads if layout == STANDARD_WEIGHTS else " or ".join(layout))
            )
        download([weights])
        if weights.endswith(".index.json"):
            download(shards_of(folder / weights, repo_id))

    source.fetch = fetch
    return source


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise RepoIdError(
            f"'{readable(repo_id)}' is neither an existing folder nor a valid Hub repo id (owner/name); "
            "check the spelling"
        ) from e


def _config_of(meta: list[str], repo_id: str, revision: str | None) -> str:
    """The model config among a repo's metadata files."""
    config = config_name(meta)
    if config is None:
        raise HubError(
            f"{repo_id} has no {' (nor '.join(CONFIG_FILES)}{')' * (len(CONFIG_FILES) - 1)} at {revision or 'main'}; "
            "is it a transformers, timm or open_clip model?"
        )
    return config


def shards_of(index_path: Path, repo_id: str) -> list[str]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{repo_id}: {index_path.name} is not a valid weight index") from e
    for s in shards:
        if not isinstance(s, str) or not is_plain_name(s):
            raise InputError(f"{repo_id}: {index_path.name} names shard {s!r}; shard names must be plain file names")
    return shards


def is_metadata(name: str) -> bool:
    """Small files the output carries over (configs, tokenizer, model card, code, license and notice
    files), in subfolders too, but not in hidden folders or the folders of other weight formats (onnx/, ...)."""
    *folders, base = name.split("/")
    if is_weight_file(base) or any(f.startswith(".") or f in EXPORT_FOLDERS for f in folders):
        return False
    return base == ".gitattributes" or base.endswith(METADATA_SUFFIXES) or LEGAL.fullmatch(base) is not None


def _cached_source(repo_id: str, revision: str | None, need_weights: bool = True) -> Source:
    """Offline (HF_HUB_OFFLINE=1) or unreachable: use the snapshot already in the cache, if it
    holds what a conversion reads (config.json and one complete set of weights)."""
    from huggingface_hub import snapshot_download

    why = "offline mode is on (HF_HUB_OFFLINE=1)" if _offline_mode() else f"the Hub cannot be reached ({_endpoint()})"
    how = "run again with network access" + (" and without HF_HUB_OFFLINE=1" if _offline_mode() else "")
    name = f"{repo_id}{'@' + revision if revision else ''}"
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception as e:
        raise HubError(f"{name} is not in the local cache and {why}; {how}") from e
    missing = missing_from_snapshot(folder)
    if missing and (need_weights or "config.json" in missing):
        raise HubError(
            f"{name} is only partly in the local cache ({missing} not downloaded, e.g. after an interrupted run) "
            f"and {why}; {how} to download them"
        )
    return Source(folder, repo_id, repo_id.split("/")[-1], repo_id, folder.name)


def missing_from_snapshot(folder: Path) -> str | None:
    """What a cached snapshot lacks for a conversion, in words; None when it is complete."""
    try:
        files = sorted(p.name for p in folder.iterdir() if p.is_file())
    except OSError:
        files = []
    if config_name(files) is None:
        return "its config.json was"
    weights = pick_weights(files, WEIGHT_FILES)
    if weights is None:
        return "its weights were"
    if weights.endswith(".index.json"):
        try:
            shards = shards_of(folder / weights, folder.name)
        except InputError:
            return "its weights were"
        lacking = [s for s in shards if s not in files]
        if lacking:
            return f"{len(lacking)} of its {len(shards)} weight shards were"
    return None


def _offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def _is_offline(e: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(e, OfflineModeIsEnabled):
        return True
    if isinstance(e, HfHubHTTPError):
        return False
    names = {c.__name__ for c in type(e).__mro__}
    return bool(names & {"ConnectError", "ConnectTimeout", "ConnectionError", "TimeoutException", "NetworkError"})


def hub_error(e: BaseException, repo_id: str, revision: str | None) -> HubError:
    """One line for a huggingface_hub failure. Tokens never appear in it."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, GatedRepoError):
        return HubError(f"{repo_id} is gated: accept its terms on its Hub page, then {LOGIN_HINT}")
    if isinstance(e, RepositoryNotFoundError):
        return RepoNotFoundError(
            f"repository {repo_id} was not found on the Hub; if it is private or gated, {LOGIN_HINT}"
        )
    if isinstance(e, RevisionNotFoundError):
        return NotFoundError(f"revision {revision!r} was not found in {repo_id}; give a branch, tag or commit it has")
    if isinstance(e, RemoteEntryNotFoundError):
        return HubError(f"a file of {repo_id} listed by the Hub could not be downloaded (not found); try again")
    if isinstance(e, LocalEntryNotFoundError) or _is_offline(e):
        return HubError(
            f"cannot download {repo_id}: the Hub cannot be reached ({_endpoint()}) and the files are not cached"
        )
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if getattr(e, "response", None) is not None else "?"
        if status in (401, 403):
            return HubError(f"the Hub refused access to {repo_id} (HTTP {status}); {LOGIN_HINT}")
        if status == 404:  # a mirror or proxy that names no error code
            where = f"{repo_id}" + (f" at revision {revision!r}" if revision else "")
            return NotFoundError(
                f"the Hub answered HTTP 404 (not found) for {where}: check the repo id"
                + (" and the revision" if revision else "")
                + f", and, if it is private or gated, {LOGIN_HINT}"
            )
        return HubError(f"the Hub answered HTTP {status} for {repo_id}; try again later")
    return HubError(f"downloading {repo_id} failed: {_one_line(e)}")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return re.sub(r"hf_[A-Za-z0-9]{10,}", "hf_***", text[0]) if text else e.__class__.__name__
