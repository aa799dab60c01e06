"""xcomposer-resize: turn a vision checkpoint (CLIP, SigLIP, DINOv2, ViT, timm, open_clip) into one
for a new input resolution."""

from __future__ import annotations

from .version import __version__

TYPE_CHECKING = False  # not typing's: `xcr resize` imports this package before it starts the torch worker,
# and typing costs ~6 ms there (type checkers treat any TYPE_CHECKING as true)

__all__ = ["__version__", "resize", "resize_model", "inspect", "verify", "Result", "Size", "XcrError"]

if TYPE_CHECKING:
    from typing import Any

    from .commands.inspect import inspect
    from .commands.verify import verify
    from .conversion.model import resize_model
    from .conversion.resize import Result, resize
    from .errors import XcrError
    from .size import Size

# name → the module that defines it: imported on first use, so `import xcomposer_resize` stays instant
_LAZY = {
    "resize": "conversion.resize",
    "Result": "conversion.resize",
    "XcrError": "errors",
    "resize_model": "conversion.model",
    "Size": "size",
    "inspect": "commands.inspect",
    "verify": "commands.verify",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (`dir(xcomposer_resize)`, completion), the lazy ones included: they are not
    in globals() until first used."""
    return sorted(__all__)
