from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.builders import build
from tests.hubserver import HubServer

# huggingface_hub reads its environment once, at import: set it before anything imports it.
# Every test talks to a loopback hub server and a private cache; nothing touches the internet.
HUB = HubServer()
HF_HOME = Path(tempfile.mkdtemp(prefix="xcr-test-hf-home-"))
os.environ.update(
    HF_ENDPOINT=HUB.url,
    HF_HOME=str(HF_HOME),
    HF_HUB_CACHE=str(HF_HOME / "hub"),
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_HUB_DISABLE_XET="1",
    TOKENIZERS_PARALLELISM="false",
)
for _name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.pop(_name, None)


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def xcr(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run the CLI in process through `main` (the one place errors become messages)."""
    from xcomposer_resize.cli.main import main

    def run(*args: str) -> Run:
        capsys.readouterr()
        code = main([str(a) for a in args])
        got = capsys.readouterr()
        return Run(code, got.out, got.err)

    return run


@pytest.fixture
def make_ckpt(tmp_path: Path) -> Callable[..., Path]:
    """Build a tiny CLIP checkpoint folder under tmp_path (see tests/builders.py)."""
    counter = iter(range(1000))

    def make(name: str | None = None, **kwargs: object) -> Path:
        folder = tmp_path / (name or f"clip-vit-tiny-patch14-336-{next(counter)}")
        return build(folder, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def about_to_land() -> Iterator[Callable[[Callable[[Path, Path], None]], None]]:
    """Register `action(temporary, output)` to run once, the next time a run is about to land an
    output (`xcomposer_resize.conversion.land.BEFORE_LANDING`): the instant another writer could take the
    output path. The action may start another run; that run lands without it."""
    from xcomposer_resize.conversion import land as output

    registered: list[Callable[[Path, Path], None]] = []

    def register(action: Callable[[Path, Path], None]) -> None:
        def once(tmp: Path, out: Path) -> None:
            output.BEFORE_LANDING.remove(once)
            action(tmp, out)

        output.BEFORE_LANDING.append(once)
        registered.append(once)

    yield register
    for hook in registered:
        if hook in output.BEFORE_LANDING:
            output.BEFORE_LANDING.remove(hook)


@pytest.fixture(scope="session")
def hub() -> Iterator[HubServer]:
    """The loopback hub server that HF_ENDPOINT points at (see the top of this file)."""
    yield HUB


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` run only where torch sees a CUDA GPU."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, to prove a folder untouched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
