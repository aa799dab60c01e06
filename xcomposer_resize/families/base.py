"""The neutral part of a family adapter: what every family says, and the hooks the conversion asks.

A family's adapter says which tensor is the vision position table (never a text tower's), how many
prefix rows it has and whether it is stored [rows, C] or [1, rows, C], which buffer holds the
position ids, where its config states the sizes and what its loader assumes when they are missing,
which files hold its config and weights, the interpolation its own runtime applies (xcr's default
for it), and what a vision-only output is. The defaults here are those of a checkpoint that is all
vision tower and has no processor files (timm); transformers' families add their layer in
transformers.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..checkpoint.weights import CONFIG, STANDARD_WEIGHTS
from ..errors import InputError
from ..size import Size


@dataclass(frozen=True)
class Family:
    """How one model family stores its vision position embedding.

    Attributes:
        name: short name shown to users.
        pos_suffix: name suffix of the position table [prefix + g*g, C] (or [1, prefix + g*g, C]).
        patch_suffix: name suffix of the patch embedding's kernel [C, 3, p, p] (the patch size p).
        num_prefix_tokens: rows before the grid (CLIP: the class token).
        default_image_size, default_patch_size: what the family's loader assumes when the config
            leaves them out.
        runtime: the code that interpolates at run time (what the default equals), for cards and inspect.
        ids_suffix: name suffix of the optional int position-id buffer [1, prefix + g*g].
        exclude_prefixes: names starting with these are never the vision table (text towers).
        mode, antialias: the interpolation the family's own runtime applies (xcr's default).
        batched: the table is stored [1, rows, C] (ViT, DINOv2, timm), not [rows, C] (CLIP, SigLIP).
        config_file: the file that holds the model config (open_clip: open_clip_config.json).
        library: the library that loads it (the model card's library_name), and `loader`, what
            loads it in the card's words.
        weight_files: the weight files it reads, in order of preference (a repo may carry several layouts).
        square_only: why the family's checkpoints cannot be non-square ("": they can); `square_too`:
            which of its checkpoints need a square all the same, in words (help texts).
        patch_from_weights: a patch size the config leaves out is the patch embedding kernel's (timm).
        no_table: what it means when the weights hold no position table ("": not a checkpoint of the family).
        processor_files: it reads transformers' processor files (preprocessor_config.json, processor_config.json).
        pixels_in_code: the model's own code makes its pixels and counts its image tokens (XComposer2,
            InternVL-chat): a checkpoint without processor files lacks nothing.
        states_dtype: its config states the weights' dtype (transformers' `torch_dtype`/`dtype`).
        code_files: names of the model code files whose literals state the size (`rewrite_code`).
        pipeline: the Hub's task of a whole checkpoint (the card's pipeline_tag, unless the source's states one).
    """

    name: str
    pos_suffix: str
    patch_suffix: str
    num_prefix_tokens: int
    default_image_size: int
    default_patch_size: int
    runtime: str
    ids_suffix: str = ""
    exclude_prefixes: tuple[str, ...] = ()
    mode: str = "bicubic"
    antialias: bool = False
    batched: bool = False
    config_file: str = CONFIG
    library: str = "transformers"
    loader: str = "`from_pretrained`"
    weight_files: tuple[str, ...] = STANDARD_WEIGHTS
    square_only: str = ""
    square_too: str = ""
    patch_from_weights: bool = False
    no_table: str = ""
    processor_files: bool = False
    pixels_in_code: bool = False
    states_dtype: bool = False
    pipeline: str = "zero-shot-image-classification"
    code_files: tuple[str, ...] = ()

    # ------------------------------------------------------------ which config, which sizes

    def matches(self, config: dict[str, Any]) -> bool:
        """Whether `config` (the model config file's content) is of this family."""
        return False

    def for_config(self, config: dict[str, Any]) -> Family:
        """The adapter for this very config: itself, or a variant (open_clip's timm-trunk towers)."""
        return self

    def stated_sizes(self, config: dict[str, Any]) -> tuple[Size | None, int | None] | None:
        """(image size, patch size) as the config states them (None for a key it leaves out), for a
        family whose sizes are not in vision config blocks; None: read the blocks."""
        return None

    def vision_config_blocks(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        """The config dicts that hold `image_size`/`patch_size` for the vision tower (none: the
        family states them elsewhere, `stated_sizes`)."""
        return []

    def size_json(self, res: Size) -> Any:
        """`res` as the family's config states an image size: an int when square, else [height, width]."""
        return res.json()

    def set_size(self, config: dict[str, Any], res: Size, patch: int) -> None:
        """State `res` in `config` (a copy, changed in place) wherever the family's loader reads it:
        an int when square, [height, width] otherwise (only for a family that is not square_only)."""
        for block in self.vision_config_blocks(config):
            block["image_size"] = self.size_json(res)
            block.setdefault("patch_size", patch)

    def square_reason(self, config: dict[str, Any]) -> str:
        """Why a checkpoint with this config cannot be converted to a non-square size ("": it can)."""
        return self.square_only

    def grid_step(self, config: dict[str, Any]) -> int:
        """The grid's sides must be multiples of this (a VLM that folds or pools cells into tokens;
        `refusal` says so for a size that is not); 1: any grid."""
        return 1

    def refusal(self, config: dict[str, Any], res: Size) -> str:
        """Why no config the family's loader reads builds this checkpoint at `res` ("": one does).
        Asked before any work; `set_size` may rely on it."""
        return ""

    def size_note(self, config: dict[str, Any], res: Size) -> str:
        """What the user should know about how `res` is stated for this config ("": nothing)."""
        return ""

    def rewrite_processor(
        self, data: dict[str, Any], res: Size, filename: str, config: dict[str, Any]
    ) -> dict[str, Any]:
        """A processor file's content for an output at `res` of a checkpoint whose (source) model config
        is `config` (only for a family with processor_files)."""
        raise AssertionError(f"{self.name} reads no processor files")

    def rewrite_code(self, rel: str, text: str, res: Size, patch: int) -> str:
        """A code file (one of `code_files`) for an output at `res`, or an InputError naming the line to change."""
        return text

    # ------------------------------------------------------------ which tensors

    def find(self, names: list[str], suffix: str) -> str | None:
        """The one tensor name ending in `suffix` outside the excluded towers, or None."""
        if not suffix:
            return None
        hits = [
            n for n in names if (n == suffix or n.endswith("." + suffix)) and not n.startswith(self.exclude_prefixes)
        ]
        if len(hits) > 1:
            raise InputError(f"found {len(hits)} vision position tables ({', '.join(hits)}); expected one")
        return hits[0] if hits else None

    def prefix_rows(self, rows: int, cells: int, tokens: dict[str, tuple[int, ...]]) -> int:
        """The rows before the grid in a table of `rows` rows whose grid has `cells` cells; `tokens`:
        the shapes of the checkpoint's prefix-token tensors (names ending in TOKEN_NAMES)."""
        return self.num_prefix_tokens

    # ------------------------------------------------------------ a vision-only output

    @property
    def has_text(self) -> bool:
        """Whether checkpoints of the family may hold more than the vision tower."""
        return False

    def is_vision_tensor(self, name: str, projection: bool) -> bool:
        """Whether `name` belongs in a vision-only output (with the vision projection when `projection`)."""
        return not name.startswith(self.exclude_prefixes)

    def vision_only_problem(self, names: list[str], projection: bool) -> str:
        """Why a vision-only output (with the projection when `projection`) cannot be made of a
        checkpoint with these tensors ("": it can), saying what to leave out: `{vision_only}` and
        `{with_projection}` stand for the arguments as the caller spells them."""
        if projection:
            return f"{self.name} checkpoints have no vision projection to keep; leave {{with_projection}} out"
        return ""

    def vision_only_config(
        self, config: dict[str, Any], projection: bool, shapes: dict[str, tuple[int, ...]] | None = None
    ) -> dict[str, Any]:
        """The config of a vision-only checkpoint made from `config` (a vision model's: itself); `shapes`:
        the checkpoint's tensor shapes, for a family whose config does not describe its tower."""
        return dict(config)

    def oracle(self, config: dict[str, Any]) -> str | None:
        """The transformers class that loads a checkpoint of this config (the oracle of `xcr
        verify`), or None when transformers loads none."""
        return None

    def vision_only_form(self, config: dict[str, Any]) -> tuple[bool, bool]:
        """Whether `config` is that of a vision-only checkpoint of a family that also has full ones
        (the vision tower alone), and whether it keeps the vision projection."""
        return False, False

    def vision_only_drops(self, rel: str) -> str:
        """Why a vision-only output leaves the source file `rel` out ("": it carries it)."""
        return ""

    def vision_only_processors(self, processors: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The processor files (relative name → content) of a vision-only output, made of the source's."""
        return processors

    def vision_only_name(self, name: str) -> str:
        """A tensor's name in a vision-only output (a VLM's tower in its bare family's layout): unchanged."""
        return name

    def vision_architecture(self, config: dict[str, Any], projection: bool) -> str | None:
        """The class a vision-only output of `config` loads as, for the card (None: the whole
        checkpoint is the vision tower already)."""
        return None
