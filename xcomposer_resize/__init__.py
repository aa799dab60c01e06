"""xcomposer-resize: turn a CLIP vision checkpoint into one for a new input resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "resize", "resize_model", "inspect", "Result", "XcrError"]

if TYPE_CHECKING:
    from .convert import Result, resize
    from .errors import XcrError
    from .inspection import inspect
    from .model import resize_model


def __getattr__(name: str) -> Any:  # lazy, so `import xcomposer_resize` stays instant
    if name in ("resize", "Result"):
        from . import convert

        return getattr(convert, name)
    if name == "XcrError":
        from .errors import XcrError

        return XcrError
    if name == "resize_model":
        from .model import resize_model

        return resize_model
    if name == "inspect":
        from .inspection import inspect

        return inspect
    raise AttributeError(name)
