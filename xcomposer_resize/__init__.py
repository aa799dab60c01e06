"""xcomposer-resize: turn a CLIP vision checkpoint into one for a new input resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "resize", "resize_model", "inspect", "verify", "Result", "Size", "XcrError"]

if TYPE_CHECKING:
    from .convert import Result, resize
    from .errors import XcrError
    from .inspection import inspect
    from .model import resize_model
    from .size import Size
    from .verification import verify

# name → the module that defines it: imported on first use, so `import xcomposer_resize` stays instant
_LAZY = {
    "resize": "convert",
    "Result": "convert",
    "XcrError": "errors",
    "resize_model": "model",
    "Size": "size",
    "inspect": "inspection",
    "verify": "verification",
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
