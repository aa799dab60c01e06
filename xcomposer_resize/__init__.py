"""xcomposer-resize: turn a CLIP vision checkpoint into one for a new input resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "resize", "Result", "XcrError"]

if TYPE_CHECKING:
    from .convert import Result, resize
    from .errors import XcrError


def __getattr__(name: str) -> Any:  # lazy, so `import xcomposer_resize` stays instant
    if name in ("resize", "Result"):
        from . import convert

        return getattr(convert, name)
    if name == "XcrError":
        from .errors import XcrError

        return XcrError
    raise AttributeError(name)
