"""An input size in pixels, height × width: square (490) or not (448x672). Plain values; no torch."""

from __future__ import annotations

import re
from dataclasses import dataclass

Grid = tuple[int, int]  # (rows, columns) of patches


@dataclass(frozen=True)
class Size:
    """An image size in pixels. `str()` is how users write it: `490`, or `448x672` (height x width)."""

    height: int
    width: int

    @classmethod
    def square(cls, side: int) -> Size:
        return cls(side, side)

    @classmethod
    def parse(cls, text: str) -> Size | None:
        """`490` or `448x672` (also `448×672`, `448X672`); None when `text` is neither."""
        found = re.fullmatch(r"\s*([0-9]+)\s*(?:[x×X]\s*([0-9]+))?\s*", text)
        if found is None:
            return None
        height = int(found.group(1))
        return cls(height, int(found.group(2)) if found.group(2) else height)

    @classmethod
    def from_json(cls, value: object) -> Size | None:
        """A size as configs and records state it: an int, or [height, width]; None for anything else."""
        if type(value) is int and value > 0:
            return cls.square(value)
        if isinstance(value, list) and len(value) == 2 and all(type(v) is int and v > 0 for v in value):
            return cls(value[0], value[1])
        return None

    @property
    def is_square(self) -> bool:
        return self.height == self.width

    @property
    def sides(self) -> tuple[int, int]:
        return self.height, self.width

    def json(self) -> int | list[int]:
        """The size as configs state it: its side when square (`490`), else `[height, width]`."""
        return self.height if self.is_square else [self.height, self.width]

    def grid(self, patch: int) -> Grid:
        """The patch grid, `size // patch` on each side, as transformers and timm compute it."""
        return self.height // patch, self.width // patch

    @property
    def px(self) -> str:
        """For prose: `490 px`, `448×672 px`."""
        return f"{self.height} px" if self.is_square else f"{self.height}×{self.width} px"

    def __str__(self) -> str:
        return str(self.height) if self.is_square else f"{self.height}x{self.width}"


def grid_text(grid: Grid) -> str:
    """`35×35`."""
    return f"{grid[0]}×{grid[1]}"
