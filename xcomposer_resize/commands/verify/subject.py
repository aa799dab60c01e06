"""What every check of `xcr verify` is given (the output and its source, read once), what it
returns, and the registry that runs the checks in order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...checkpoint.safetensors import read_header
from ...checkpoint.weights import Checkpoint
from ...errors import InputError
from ...families import Family
from ...size import Grid, Size

if TYPE_CHECKING:
    from ...checkpoint.source import Source


# cosine similarity a forward pass must reach when the output's weights are stored in fewer bits
# than float32 (compared in float32): what rounding every weight to that many mantissa bits costs
TOLERANCE = {"F16": 0.9995, "BF16": 0.995}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
VERIFY_EXTRA = "pip install 'xcomposer-resize[verify]'"


@dataclass
class Check:
    """One check: passed (True), failed (False) or skipped (None), and its figure."""

    check: str
    ok: bool | None
    detail: str


@dataclass
class Drift:
    """How far the resize alone moves image embeddings: cosine similarity of the source's embedding
    at its own resolution and the output's at the new one, over `images` images."""

    images: int
    mean: float
    min: float
    worst: list[dict[str, Any]] = field(default_factory=list)  # [{file, cosine}], lowest first


@dataclass
class Verification:
    """What `verify` found; `to_json()` is the CLI's --json object."""

    output: str
    source: str
    revision: str | None
    res: Size
    checks: list[Check]
    drift: Drift | None = None

    @property
    def ok(self) -> bool:
        """Every check that ran passed (skipped ones do not count)."""
        return all(c.ok is not False for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.check for c in self.checks if c.ok is False]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["res"] = self.res.json()
        data["ok"] = self.ok
        return data


@dataclass
class Made:
    """How the output was made: from its record, or assumed (the defaults) without one."""

    mode: str
    antialias: bool
    dtype: str  # "keep" or a dtype word
    device: str
    recorded: bool
    vision_only: bool = False  # the vision tower alone (the record's, else what the config says)
    with_projection: bool = False


@dataclass
class Subject:
    """What every check looks at: the output and its source, read once. `out_ckpt` is None when the
    output's files did not parse (the files check failed)."""

    folder: Path
    family: Family
    config: dict[str, Any]  # the output's model config
    res: Size  # the resolution the output is meant for
    grid: Grid
    prefix: int  # prefix rows of the table (class token, registers)
    config_problem: str | None  # what is wrong with the config's sizes, found while reading them
    expected: Expected
    src_grid: Grid
    out_ckpt: Checkpoint | None

    @property
    def made(self) -> Made:
        return self.expected.made


# The checks after `files`, in the order they run and are reported. A new check is its name here and
# one function decorated with @check in the module of its kind.
ORDER = ("tensors", "table", "configs", "tokens", "load")
CHECKS: list[tuple[str, bool, Callable[[Subject], Check | None]]] = []  # (name, needs the weights parsed, the check)


Run = Callable[[Subject], Check | None]


def check(name: str, needs_files: bool = False) -> Callable[[Run], Run]:
    """Register a check under `name`; `needs_files`: it reads the output's tensors. A check returns
    None where it does not apply (it is then not reported)."""

    def register(run: Run) -> Run:
        CHECKS.append((name, needs_files, run))
        CHECKS.sort(key=lambda c: ORDER.index(c[0]))  # a name missing from ORDER fails at import
        return run

    return register


@dataclass
class Expected:
    """What the output's files are compared with: the source (its files, config, weights and patch
    size) and how the output was made."""

    source: Source
    config: dict[str, Any]
    ckpt: Checkpoint
    patch: int
    made: Made


def some(names: list[str], n: int = 3) -> str:
    """The first `n` of `names`, and how many more."""
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def is_parameter(dtype: str) -> bool:
    """A tensor of this dtype counts as parameters in an index's `total_parameters`: transformers
    counts `model.num_parameters()`, the floating-point parameters; the integer buffers (position
    ids) are not parameters."""
    return dtype.startswith(("F", "BF"))


def stored_dtypes(folder: Path) -> set[str]:
    """The dtypes the output's weight files store their floating-point tensors in (headers only)."""
    found: set[str] = set()
    for path in folder.glob("*.safetensors"):
        try:
            found |= {t.dtype for t in read_header(path).tensors if is_parameter(t.dtype)}
        except InputError:
            pass
    return found


def first_line(e: BaseException) -> str:
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 400 else text[:400] + "…"
