"""Whole VLM checkpoints whose vision tower is a transformers family: LLaVA, LLaVA-NeXT, PaliGemma,
InternVL, Gemma 3.

A VLM adapter is its tower's adapter (CLIP, SigLIP, InternViT: the table, its prefix rows, the
runtime's interpolation, chosen by `vision_config.model_type`) plus what the VLM adds around it:
the key prefix of the tower among the language model's tensors, and the image-token count that the
config and the processor state (or derive) from the tower's grid. Every other tensor, the language
model's included, is copied byte for byte. A vision-only output is the tower alone in its bare
family's layout (a LLaVA's CLIP tower as a CLIPVisionModel checkpoint).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..size import Size
from .transformers import CLIP, SIGLIP, TransformersFamily, lifted, size_blocks

# where a VLM's tower lives, as the files written by each transformers version name it (4.x: the
# llava-hf conversions' `vision_tower.vision_model.`; 5.x: `model.vision_tower.` or `vision_tower.`)
TOWER_PREFIXES = ("vision_tower.", "model.vision_tower.")
# what a vision-only output of a VLM leaves behind: the language side's files
LANGUAGE_FILES = ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                  "added_tokens.json", "tokenizer.model", "vocab.json", "merges.txt", "chat_template.json")  # fmt: skip
# the bare vision model's own prefix in each tower family (CLIPVisionModel: `vision_model.embeddings…`)
BARE_PREFIX = {"CLIP": "vision_model.", "SigLIP": "vision_model.", "InternViT": ""}
# what a VLM's adapter takes from its tower's
TOWER_FIELDS = ("pos_suffix", "ids_suffix", "patch_suffix", "num_prefix_tokens", "default_image_size",
                "default_patch_size", "mode", "antialias", "batched", "embedding_weight", "runtime", "square_only",
                "vision_model_type", "vision_architectures")  # fmt: skip


def _fields(tower: TransformersFamily) -> dict[str, Any]:
    return {k: getattr(tower, k) for k in TOWER_FIELDS}


@dataclass(frozen=True)
class InternVitFamily(TransformersFamily):
    """transformers' InternVL vision tower (`internvl_vision`): sizes as [h, w] lists, patch included."""

    def vision_config_blocks(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        return []  # its sizes are lists: stated_sizes reads them

    def stated_sizes(self, config: dict[str, Any]) -> tuple[Size | None, int | None]:
        block = _vision_block(config, self)
        image = block.get("image_size")
        size = Size.from_json(image) if image is not None else None
        patch = block.get("patch_size")
        sides = [patch, patch] if type(patch) is int else patch
        if not (isinstance(sides, list) and len(sides) == 2 and sides[0] == sides[1] and type(sides[0]) is int):
            if patch is None:
                return size, None
            raise InputError(f"config.json has vision patch_size {patch!r}; xcr converts square patches only")
        if image is not None and size is None:
            raise InputError(f"config.json has vision image_size {image!r}, not a positive integer or [H, W]")
        return size, int(sides[0])

    def size_json(self, res: Size) -> Any:
        return [res.height, res.width]

    def set_size(self, config: dict[str, Any], res: Size, patch: int) -> None:
        block = _vision_block(config, self)
        block["image_size"] = self.size_json(res)
        block.setdefault("patch_size", [patch, patch])

    def set_model_size(self, config: Any, res: Size) -> None:
        self.vision_config_of(config).image_size = [res.height, res.width]


INTERNVIT = InternVitFamily(
    name="InternViT",
    model_types=("internvl_vision",),
    pos_suffix="embeddings.position_embeddings",
    patch_suffix="embeddings.patch_embeddings.projection.weight",
    num_prefix_tokens=1,
    default_image_size=448,  # transformers' InternVLVisionConfig: [448, 448], patch [14, 14]
    default_patch_size=14,
    vision_model_type="internvl_vision",
    vision_architectures=("InternVLVisionModel", "InternVLVisionModel"),
    batched=True,
    top_level=True,
    oracles=("InternVLVisionModel",),
    runtime="transformers' `InternVLVisionEmbeddings.interpolate_pos_encoding` (on every forward)",
    square_only="transformers' InternVL resamples its table on every forward pass and reads it as a square grid",
)


def _vision_block(config: dict[str, Any], tower: TransformersFamily) -> dict[str, Any]:
    """The dict that states the tower's sizes: `vision_config`, or the config itself (a tower alone)."""
    if config.get("model_type") == tower.vision_model_type:
        return config
    block = config.get("vision_config")
    if not isinstance(block, dict):
        raise InputError("config.json has no vision_config; is this a VLM checkpoint?")
    return block


@dataclass(frozen=True)
class VlmFamily(TransformersFamily):
    """A VLM: its tower's adapter (`tower`, set by `for_config`) and the VLM's own rules.

    Attributes:
        towers: the tower families it may hold, the default first (when vision_config names none).
        tower: the tower of this very checkpoint.
        tower_prefixes: where the tower's tensors are, as the files name them.
        pipeline: the Hub task of the whole checkpoint (the card's pipeline_tag).
    """

    towers: tuple[TransformersFamily, ...] = ()
    tower: TransformersFamily | None = None
    tower_prefixes: tuple[str, ...] = TOWER_PREFIXES
    pipeline: str = "image-text-to-text"

    @property
    def has_text(self) -> bool:
        return True

    def for_config(self, config: dict[str, Any]) -> VlmFamily:
        vision = config.get("vision_config")
        kind = vision.get("model_type") if isinstance(vision, dict) else None
        tower = next((t for t in self.towers if kind in t.model_types), None) if kind else self.towers[0]
        if tower is None:
            names = ", ".join(t for f in self.towers for t in f.model_types)
            raise InputError(f"config.json's vision_config has model_type {kind!r}; xcr converts {self.name} "
                             f"towers of {names}")  # fmt: skip
        return dataclasses.replace(self, tower=tower, **_fields(tower))

    def _tower(self) -> TransformersFamily:
        return self.tower or self.towers[0]

    # ------------------------------------------------------------ sizes and token counts

    def vision_config_blocks(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        return self._tower().vision_config_blocks(config) if self._is_tower(config) else [_vision_block(config, self)]

    def stated_sizes(self, config: dict[str, Any]) -> tuple[Size | None, int | None] | None:
        return self._tower().stated_sizes(config)

    def size_json(self, res: Size) -> Any:
        return self._tower().size_json(res)

    def set_size(self, config: dict[str, Any], res: Size, patch: int) -> None:
        tile = None if self._is_tower(config) else _tile(config, self)
        if self.stated_sizes(config) is not None:  # the tower's own way (InternViT: [h, w] lists)
            self._tower().set_size(config, res, patch)
        else:
            super().set_size(config, res, patch)
        if tile is not None:
            self.set_tokens(config, res, res.grid(patch), tile)

    def set_tokens(self, config: dict[str, Any], res: Size, grid: tuple[int, int], tile: int) -> None:
        """State, in the VLM's config, what follows from the tower's new grid (token counts, tiles); `tile`:
        the tower's input size before."""

    def processor_tokens(self, data: dict[str, Any], res: Size, grid: tuple[int, int], config: dict[str, Any]) -> None:
        """State, in a processor file's content, what follows from the new grid (token counts, tiles)."""

    def token_keys(self) -> tuple[str, ...]:
        """The config and processor keys `set_tokens`/`processor_tokens` rewrite (verify checks them apart)."""
        return ()

    def tokens(self, config: dict[str, Any], grid: tuple[int, int]) -> int:
        """Image tokens per image (per tile) the language model sees for a tower grid."""
        return grid[0] * grid[1]

    def tokens_rule(self, config: dict[str, Any]) -> str:
        """How the image-token count follows the grid, in words."""
        return "one per cell"

    def rewrite_processor(
        self, data: dict[str, Any], res: Size, filename: str, config: dict[str, Any]
    ) -> dict[str, Any]:
        out = super().rewrite_processor(data, res, filename, config)
        if not self._is_tower(config):
            self.processor_tokens(out, res, res.grid(self._patch(config)), config)
        return out

    def _patch(self, config: dict[str, Any]) -> int:
        stated = self.stated_sizes(config)
        if stated is not None:
            return stated[1] or self.default_patch_size
        patch = _vision_block(config, self).get("patch_size")
        return patch if type(patch) is int else self.default_patch_size

    def _is_tower(self, config: dict[str, Any]) -> bool:
        """`config` is the tower's own (a vision-only output), not the VLM's."""
        return config.get("model_type") == self.vision_model_type

    # ------------------------------------------------------------ tensors

    def find(self, names: list[str], suffix: str) -> str | None:
        return super().find([n for n in names if self.is_vision_tensor(n, False) or "." not in n], suffix)

    def is_vision_tensor(self, name: str, projection: bool) -> bool:
        return name.startswith(self.tower_prefixes) or name.split(".")[0] in ("embeddings", "encoder", "vision_model")

    def vision_only_problem(self, names: list[str], projection: bool) -> str:
        if projection:
            return (f"{'an' if self.name[0] in 'AEIOU' else 'a'} {self.name} checkpoint's projector maps into its language model, not into a shared embedding "
                    "space: leave {with_projection} out")  # fmt: skip
        return ""

    def vision_only_drops(self, rel: str) -> str:
        name = rel.split("/")[-1]
        if name in LANGUAGE_FILES or name.endswith((".jinja", ".py")):
            return "the language model's and the whole model's (tokenizer, generation config, chat template, code)"
        return ""

    def vision_only_processors(self, processors: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The tower's image processor alone: preprocessor_config.json, or the image processor block that
        processor_config.json nests (the VLM's processor, which needs the tokenizer, stays behind)."""
        out = {rel: data for rel, data in processors.items() if rel.split("/")[-1] != "processor_config.json"}
        for rel, data in processors.items():
            folder, name = rel.rpartition("/")[0], rel.split("/")[-1]
            alone = f"{folder}/preprocessor_config.json" if folder else "preprocessor_config.json"
            if name == "processor_config.json" and isinstance(data.get("image_processor"), dict) and alone not in out:
                out[alone] = dict(data["image_processor"])
        return out

    def vision_only_name(self, name: str) -> str:
        """A tower tensor's name in the bare tower's layout (`vision_tower.embeddings.x` → `vision_model.embeddings.x`)."""
        for prefix in self.tower_prefixes:
            if name.startswith(prefix):
                rest = name[len(prefix) :]
                bare = BARE_PREFIX.get(self._tower().name, "")
                return rest if (bare and rest.startswith(bare)) else bare + rest
        return name

    def vision_only_config(
        self, config: dict[str, Any], projection: bool, shapes: dict[str, tuple[int, ...]] | None = None
    ) -> dict[str, Any]:
        if self._is_tower(config):
            return dict(config)
        return lifted(_vision_block(config, self), config, (), self.vision_model_type, self.vision_architectures[False])

    def vision_only_form(self, config: dict[str, Any]) -> tuple[bool, bool]:
        return self._is_tower(config), False

    def vision_architecture(self, config: dict[str, Any], projection: bool) -> str | None:
        return self.vision_architectures[False]


def _set_present(data: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` to `value` in every block of a processor file that states it."""
    for _where, block in size_blocks(data):
        if key in block:
            block[key] = value


@dataclass(frozen=True)
class LlavaFamily(VlmFamily):
    """LLaVA-1.5 and LLaVA-NeXT: the processor counts the image tokens from the pixels; the config's
    `image_seq_length` (newer LlavaConfig) states it; NeXT's tiles are `image_grid_pinpoints`."""

    def tokens(self, config: dict[str, Any], grid: tuple[int, int]) -> int:
        full = config.get("vision_feature_select_strategy") == "full"
        return grid[0] * grid[1] + (self.num_prefix_tokens if full else 0)

    def tokens_rule(self, config: dict[str, Any]) -> str:
        full = config.get("vision_feature_select_strategy") == "full"
        tiles = "; anyres tiles: image_grid_pinpoints scale with the tile" if "image_grid_pinpoints" in config else ""
        return ("one per cell, plus the class token (strategy full)" if full else "one per cell") + tiles

    def set_tokens(self, config: dict[str, Any], res: Size, grid: tuple[int, int], tile: int) -> None:
        if "image_seq_length" in config:
            config["image_seq_length"] = self.tokens(config, grid)
        if "image_grid_pinpoints" in config:
            config["image_grid_pinpoints"] = _pinpoints(config["image_grid_pinpoints"], tile, res)

    def processor_tokens(self, data: dict[str, Any], res: Size, grid: tuple[int, int], config: dict[str, Any]) -> None:
        for _where, block in size_blocks(data):
            if "image_grid_pinpoints" in block:  # `config` is the source's: its tile is the old one
                block["image_grid_pinpoints"] = _pinpoints(block["image_grid_pinpoints"], _tile(config, self), res)
            elif "LlavaNext" in str(block.get("image_processor_type")) and "image_grid_pinpoints" in config:
                # the class's default tiles (336-px ones) would disagree with the model's: state the model's
                block["image_grid_pinpoints"] = _pinpoints(config["image_grid_pinpoints"], _tile(config, self), res)

    def token_keys(self) -> tuple[str, ...]:
        return ("image_seq_length", "image_grid_pinpoints")

    def refusal(self, config: dict[str, Any], res: Size) -> str:
        pinpoints = config.get("image_grid_pinpoints")
        tile = _tile(config, self)
        if isinstance(pinpoints, list) and any(
            not isinstance(p, list) or any(type(v) is not int or v % tile for v in p) for p in pinpoints
        ):
            return (f"config.json's image_grid_pinpoints {pinpoints} are not multiples of the tile "
                    f"({tile} px), so xcr cannot scale them with it; fix them first")  # fmt: skip
        return ""


def _tile(config: dict[str, Any], family: VlmFamily) -> int:
    """The tower's input size in the config (the tile size of LLaVA-NeXT), square."""
    size = _vision_block(config, family).get("image_size", family.default_image_size)
    return int(size[0] if isinstance(size, list) else size)


def _pinpoints(pinpoints: Any, old: int, res: Size) -> list[list[int]]:
    """Anyres resolutions scaled from tiles of `old` px to tiles of `res` px: [[336, 672]] at 448 → [[448, 896]]."""
    if not isinstance(pinpoints, list):
        raise InputError(f"image_grid_pinpoints {pinpoints!r} is not a list of [height, width] pairs")
    return [[v * res.height // old if i == 0 else v * res.width // old for i, v in enumerate(p)] for p in pinpoints]


@dataclass(frozen=True)
class PaliGemmaFamily(VlmFamily):
    """PaliGemma: one token per tower cell, stated as `num_image_tokens` (vision and text configs) and
    the processor's static `image_seq_length`."""

    def set_tokens(self, config: dict[str, Any], res: Size, grid: tuple[int, int], tile: int) -> None:
        for block in (config.get("vision_config"), config.get("text_config"), config):
            if isinstance(block, dict) and "num_image_tokens" in block:
                block["num_image_tokens"] = self.tokens(config, grid)

    def processor_tokens(self, data: dict[str, Any], res: Size, grid: tuple[int, int], config: dict[str, Any]) -> None:
        _set_present(data, "image_seq_length", self.tokens(config, grid))

    def token_keys(self) -> tuple[str, ...]:
        return ("num_image_tokens", "image_seq_length")


@dataclass(frozen=True)
class InternVlFamily(VlmFamily):
    """InternVL (transformers' layout): a pixel shuffle by `downsample_ratio` (0.5: 2×2 cells per
    token); `image_seq_length` in the config and the processor."""

    def _fold(self, config: dict[str, Any]) -> int:
        ratio = config.get("downsample_ratio", 0.5)
        fold = round(1 / ratio) if isinstance(ratio, (int, float)) and ratio > 0 else 0
        if fold < 1 or not math.isclose(fold * ratio, 1.0):
            raise InputError(f"config.json has downsample_ratio {ratio!r}; xcr reads ratios 1/k")
        return fold

    def tokens(self, config: dict[str, Any], grid: tuple[int, int]) -> int:
        fold = self._fold(config)
        return (grid[0] // fold) * (grid[1] // fold)

    def grid_step(self, config: dict[str, Any]) -> int:
        return self._fold(config)

    def tokens_rule(self, config: dict[str, Any]) -> str:
        fold = self._fold(config)
        return f"one per {fold}×{fold} cells (downsample_ratio {config.get('downsample_ratio', 0.5)}): the grid must be a multiple of {fold}"

    def set_tokens(self, config: dict[str, Any], res: Size, grid: tuple[int, int], tile: int) -> None:
        if "image_seq_length" in config:
            config["image_seq_length"] = self.tokens(config, grid)

    def processor_tokens(self, data: dict[str, Any], res: Size, grid: tuple[int, int], config: dict[str, Any]) -> None:
        _set_present(data, "image_seq_length", self.tokens(config, grid))

    def token_keys(self) -> tuple[str, ...]:
        return ("image_seq_length",)

    def refusal(self, config: dict[str, Any], res: Size) -> str:
        fold = self._fold(config)
        patch = self._patch(config)
        grid = res.grid(patch)
        if grid[0] % fold or grid[1] % fold:
            step = patch * fold
            below, above = res.height // step * step, (res.height // step + 1) * step
            sizes = f"{below} or {above}" if below else f"{above}"
            return (f"InternVL folds {fold}×{fold} cells into one token (downsample_ratio), so the grid must be a "
                    f"multiple of {fold}: {res.px} gives {grid[0]}×{grid[1]} cells of {patch} px; use {sizes}")  # fmt: skip
        return ""


@dataclass(frozen=True)
class Gemma3Family(VlmFamily):
    """Gemma 3: the projector average-pools the tower's grid to `mm_tokens_per_image` tokens, a fixed
    count: a new grid must be a multiple of the pooled side."""

    def tokens(self, config: dict[str, Any], grid: tuple[int, int]) -> int:
        tokens = config.get("mm_tokens_per_image", 256)
        return tokens if type(tokens) is int else 256

    def tokens_rule(self, config: dict[str, Any]) -> str:
        side = math.isqrt(self.tokens(config, (0, 0)))
        return (
            f"fixed: the grid is pooled to {side}×{side} (mm_tokens_per_image); the grid must be a multiple of {side}"
        )

    def _side(self, config: dict[str, Any]) -> int:
        """The side of the square the grid is pooled to (0: `mm_tokens_per_image` is not a square count)."""
        tokens = config.get("mm_tokens_per_image", 256)
        side = math.isqrt(tokens) if type(tokens) is int and tokens > 0 else 0
        return side if side * side == tokens else 0

    def grid_step(self, config: dict[str, Any]) -> int:
        return self._side(config) or 1

    def refusal(self, config: dict[str, Any], res: Size) -> str:
        side = self._side(config)
        patch = self._patch(config)
        grid = res.grid(patch)
        if not side:
            tokens = config.get("mm_tokens_per_image", 256)
            return f"config.json has mm_tokens_per_image {tokens!r}, not a square count; xcr cannot pool to it"
        if grid[0] % side or grid[0] != grid[1]:
            step = patch * side
            return (f"Gemma 3 pools the tower's grid to {side}×{side} tokens, so the grid must be a multiple of {side}: "
                    f"{res.px} gives {grid[0]}×{grid[1]}; use a multiple of {step} px such as "
                    f"{max(step, res.height // step * step)} or {(res.height // step + 1) * step}")  # fmt: skip
        return ""


LLAVA = LlavaFamily(name="LLaVA", model_types=("llava",), towers=(CLIP, SIGLIP),
                    oracles=("LlavaForConditionalGeneration",), **_fields(CLIP))  # fmt: skip
LLAVA_NEXT = dataclasses.replace(LLAVA, name="LLaVA-NeXT", model_types=("llava_next",),
                                 oracles=("LlavaNextForConditionalGeneration",))  # fmt: skip
PALIGEMMA = PaliGemmaFamily(name="PaliGemma", model_types=("paligemma",), towers=(SIGLIP,),
                            oracles=("PaliGemmaForConditionalGeneration",), **_fields(SIGLIP))  # fmt: skip
INTERNVL = InternVlFamily(name="InternVL", model_types=("internvl",), towers=(INTERNVIT,),
                          oracles=("InternVLForConditionalGeneration",), **_fields(INTERNVIT))  # fmt: skip
GEMMA3 = Gemma3Family(name="Gemma 3", model_types=("gemma3",), towers=(SIGLIP,),
                      oracles=("Gemma3ForConditionalGeneration",), **_fields(SIGLIP))  # fmt: skip


@dataclass(frozen=True)
class XComposerFamily(VlmFamily):
    """InternLM-XComposer2 (7B, VL-7B) whole checkpoints, remote code: a CLIP-L/14-336 tower at
    `vit.vision_tower.vision_model.`, built by build_mlp.py at 336 px and resized there to the literal
    `new_size = N` (grid side) before the weights load; `img_size` in config.json drives the image transform.
    The output states the new size in both places."""

    def matches(self, config: dict[str, Any]) -> bool:
        return config.get("model_type") in self.model_types and "InternLMXComposer2ForCausalLM" in (
            config.get("architectures") or []
        )

    @property
    def type_words(self) -> tuple[str, ...]:
        return ("internlm2 with architectures InternLMXComposer2ForCausalLM",)

    def for_config(self, config: dict[str, Any]) -> VlmFamily:
        return self

    def vision_config_blocks(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        return [config] if self._is_tower(config) else []

    def stated_sizes(self, config: dict[str, Any]) -> tuple[Size | None, int | None] | None:
        if self._is_tower(config):
            return None
        size = config.get("img_size")
        if type(size) is not int or size <= 0:
            raise InputError(f"config.json has img_size {size!r}; an XComposer2 config states its input size there")
        return Size.square(size), 14  # CLIP-L/14: build_mlp.py builds openai/clip-vit-large-patch14-336

    def set_size(self, config: dict[str, Any], res: Size, patch: int) -> None:
        if self._is_tower(config):
            super().set_size(config, res, patch)
        else:
            config["img_size"] = res.height

    def rewrite_code(self, rel: str, text: str, res: Size, patch: int) -> str:
        if "Dummy Resized" in text:
            raise InputError(
                f"{rel} does not resize its tower (its resize_pos is a no-op): this XComposer variant (4KHD, 2.5) "
                "cuts every image into tiles of the tower's own size in its code, so there is nothing to convert"
            )
        lines = text.splitlines(keepends=True)
        found = [i for i, line in enumerate(lines) if NEW_SIZE.fullmatch(line)]
        if len(found) != 1:
            where = f"lines {', '.join(str(i + 1) for i in found)} all set it" if found else "no line sets it"
            raise InputError(
                f"{rel} is not in the form xcr knows: its resize_pos should set the tower's grid side in one line "
                f"`new_size = N`, and {where}; make that one line `new_size = {res.height // patch}` and convert again"
            )
        line = lines[found[0]]
        lines[found[0]] = re.sub(r"(?<==)([ \t]*)[0-9]+", rf"\g<1>{res.height // patch}", line, count=1)
        return "".join(lines)

    def vision_only_config(
        self, config: dict[str, Any], projection: bool, shapes: dict[str, tuple[int, ...]] | None = None
    ) -> dict[str, Any]:
        if self._is_tower(config):
            return dict(config)
        tower = {"model_type": "clip_vision_model", "architectures": ["CLIPVisionModel"], **XCOMPOSER_TOWER}
        tower["image_size"] = config.get("img_size", 336)
        names = shapes or {}
        table = next((s for n, s in names.items() if n.endswith(self.pos_suffix)), None)
        fc1 = next((s for n, s in names.items() if n.endswith("layers.0.mlp.fc1.weight")), None)
        layers = {n.split("layers.")[1].split(".")[0] for n in names if ".encoder.layers." in n}
        if table and fc1 and layers:  # the weights' own sizes (a tower other than CLIP-L's, as in tests)
            width = table[-1]
            tower.update(hidden_size=width, intermediate_size=fc1[0], num_hidden_layers=len(layers),
                         num_attention_heads=max(1, width // 64))  # fmt: skip
        return tower


# the line of build_mlp.py's resize_pos that states the grid side: `        new_size = 35` (a comment may follow)
NEW_SIZE = re.compile(r"[ \t]*new_size[ \t]*=[ \t]*[0-9]+[ \t]*(#[^\n]*)?\r?\n?")

# the tower XComposer2's build_mlp.py builds: openai/clip-vit-large-patch14-336's vision config
XCOMPOSER_TOWER = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24,
                   "patch_size": 14, "projection_dim": 768, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05}  # fmt: skip

XCOMPOSER2 = XComposerFamily(
    name="InternLM-XComposer2",
    model_types=("internlm2", "internlmxcomposer2"),
    towers=(CLIP,),
    tower=CLIP,
    tower_prefixes=("vit.vision_tower.",),
    oracles=("CLIPVisionModel",),  # no transformers class loads the whole model: verify loads the tower alone
    code_files=("build_mlp.py",),
    pixels_in_code=True,
    loader="XComposer's own code (`trust_remote_code=True`)",
    pipeline="visual-question-answering",
    **_fields(CLIP),
)


@dataclass(frozen=True)
class InternVlChatFamily(InternVlFamily):
    """InternVL2 / 2.5 / 3 in their remote-code layout (`internvl_chat`): the tower at `vision_model.`, its
    table a Parameter [1, 1+N, C] that the tower resamples on every forward from `vision_config.image_size`
    (so the table must match it), `force_image_size` for the token count; no processor files (the model
    card's code preprocesses)."""

    def for_config(self, config: dict[str, Any]) -> VlmFamily:
        return self

    def vision_config_blocks(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        return [_vision_block(config, self)]

    def stated_sizes(self, config: dict[str, Any]) -> tuple[Size | None, int | None] | None:
        return None

    def size_json(self, res: Size) -> Any:
        return res.json()

    def set_tokens(self, config: dict[str, Any], res: Size, grid: tuple[int, int], tile: int) -> None:
        config["force_image_size"] = res.height  # what InternVLChatModel counts its tokens from

    def oracle(self, config: dict[str, Any]) -> str | None:
        return None  # remote code: no transformers class loads it

    def vision_only_problem(self, names: list[str], projection: bool) -> str:
        return "InternVL's remote-code tower (InternVisionModel) has no transformers class to load it alone; leave {vision_only} out"

    def token_keys(self) -> tuple[str, ...]:
        return ("force_image_size",)


INTERNVL_CHAT = InternVlChatFamily(
    name="InternVL-Chat",
    model_types=("internvl_chat",),
    towers=(INTERNVIT,),
    tower_prefixes=("vision_model.",),
    pixels_in_code=True,
    loader="InternVL's own code (`trust_remote_code=True`)",
    **{
        **_fields(INTERNVIT),
        "tower": INTERNVIT,
        "pos_suffix": "embeddings.position_embedding",
        "patch_suffix": "embeddings.patch_embedding.weight",
        "vision_model_type": "intern_vit_6b",
        "runtime": "InternVL's `InternVisionEmbeddings._get_pos_embed` (float32, on every forward)",
        "default_image_size": 448,
        "default_patch_size": 14,
    },
)

VLMS: tuple[VlmFamily, ...] = (LLAVA, LLAVA_NEXT, PALIGEMMA, INTERNVL, GEMMA3, XCOMPOSER2, INTERNVL_CHAT)
