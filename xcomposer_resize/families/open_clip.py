"""open_clip's hub layout, its own towers and those on a timm trunk."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, UsageError
from ..size import Size
from .base import Family
from .timm import TIMM_SIZES, listed, timm_arch, timm_name_patch, timm_prefix

# the open_clip release whose loader xcr writes for; the first one that reads vision_cfg.timm_model_kwargs
# is a later one (open_clip's main branch has it since May 2026)
OPEN_CLIP_RELEASE = "3.3.0"


@dataclass(frozen=True)
class OpenClipFamily(Family):
    """open_clip's hub layout: open_clip_config.json = {model_cfg {embed_dim, vision_cfg {image_size,
    patch_size, width, ...}, text_cfg}, preprocess_cfg}; weights open_clip_model.safetensors or
    open_clip_pytorch_model.bin. The vision table is `visual.positional_embedding` [1+N, C]; the text
    tower's is the top-level `positional_embedding` (`text.positional_embedding`), never touched.

    A tower built on a timm trunk (vision_cfg.timm_model_name, e.g. ViT-SO400M-14-SigLIP-384) keeps
    its table in the trunk, `visual.trunk.pos_embed` [1, P+N, C], with timm's prefix rows (none for
    SigLIP trunks). open_clip 3.3.0 (`TimmModel`) builds the trunk with `timm.create_model(
    timm_model_name)`, at the size the architecture states (image_size only sizes the preprocessing),
    loads the table strictly and resamples it only for `force_image_size`, after loading; its
    CLIPVisionCfg refuses any key it does not know. So the output names timm's architecture of the
    same network at the new size (vit_so400m_patch14_siglip_384 → _378, TIMM_SIZES), and a size timm
    has no such architecture for is refused. A source that states vision_cfg.timm_model_kwargs (which
    open_clip reads only after 3.3.0: `timm.create_model(name, **timm_model_kwargs)`) is written in
    that form: the new size in timm_model_kwargs.img_size, any size."""

    trunk: bool = False  # the timm-trunk form (for_config)

    @property
    def has_text(self) -> bool:
        return True  # a whole CLIP: the text tower beside the vision tower

    def matches(self, config: dict[str, Any]) -> bool:
        cfg = config.get("model_cfg")
        return isinstance(cfg, dict) and isinstance(cfg.get("vision_cfg"), dict)

    def for_config(self, config: dict[str, Any]) -> Family:
        if self.trunk or not self._vision(config).get("timm_model_name"):
            return self
        return dataclasses.replace(
            self,
            pos_suffix="visual.trunk.pos_embed",
            patch_suffix="visual.trunk.patch_embed.proj.weight",
            batched=True,
            trunk=True,
            patch_from_weights=True,
            no_table="the timm trunk of this open_clip tower has no absolute position table (visual.trunk.pos_embed): "
            "a convolutional or relative-position tower takes another input size as it is; there is nothing to resize",
            runtime="timm's `resample_abs_pos_embed` (antialias, float32; what open_clip's `force_image_size` applies "
            "to a trunk)",
        )

    def _vision(self, config: dict[str, Any]) -> dict[str, Any]:
        vision: dict[str, Any] = (config.get("model_cfg") or {}).get("vision_cfg") or {}
        return vision

    def _kwargs(self, config: dict[str, Any]) -> dict[str, Any]:
        kwargs = self._vision(config).get("timm_model_kwargs")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise InputError(f"open_clip_config.json has vision_cfg.timm_model_kwargs {kwargs!r}, not an object")
        return kwargs or {}

    def _newer(self, config: dict[str, Any]) -> bool:
        """The config states timm_model_kwargs: it is for an open_clip after 3.3.0, which reads them."""
        return self.trunk and self._vision(config).get("timm_model_kwargs") is not None

    def _trunk_at(self, config: dict[str, Any], res: Size) -> str | None:
        """The timm architecture open_clip 3.3.0 builds at `res`: the config's own when it is built at
        that size, else its namesake of that size (TIMM_SIZES); None when timm has none."""
        name = str(self._vision(config).get("timm_model_name"))
        _, stem, built = timm_arch(name)
        stated = self.stated_sizes(config)
        if stated is not None and res == stated[0]:
            return name  # the size it has: the trunk is built as it was
        if built is not None and res.is_square and res.height in TIMM_SIZES.get(stem, ()):
            return f"{stem}_{res.height}"
        return None

    def square_reason(self, config: dict[str, Any]) -> str:
        if not self.trunk or self._newer(config):
            return ""
        return (
            f"open_clip {OPEN_CLIP_RELEASE} builds a timm trunk at the size its architecture states, and timm's are "
            "square"
        )

    def refusal(self, config: dict[str, Any], res: Size) -> str:
        if not self.trunk or self._newer(config) or self._trunk_at(config, res) is not None:
            return ""
        name = str(self._vision(config).get("timm_model_name"))
        arch, stem, built = timm_arch(name)
        sizes = TIMM_SIZES.get(stem, ()) if built is not None else ()
        has = (
            f"timm has that network at {listed(sizes)} px only ({stem}_N)"
            if sizes
            else f"xcr knows no other size of {arch} in timm"
        )
        other = "convert to one of those, or " if sizes else ""
        return (
            f"open_clip {OPEN_CLIP_RELEASE} cannot build this tower at {res.px}: it builds the timm trunk at the "
            f"size the architecture states ({name}), and {has}; {other}load the source with "
            f"open_clip.create_model_and_transforms(..., force_image_size={res.json()}), which resamples the table "
            "the same way as it loads"
        )

    def size_note(self, config: dict[str, Any], res: Size) -> str:
        if not self.trunk:
            return ""
        if self._newer(config):
            return (
                f"the source states vision_cfg.timm_model_kwargs, which open_clip reads only after "
                f"{OPEN_CLIP_RELEASE} ({OPEN_CLIP_RELEASE} refuses the key): the output states {res} there too "
                "(img_size), and loads with such an open_clip"
            )
        name, new = str(self._vision(config).get("timm_model_name")), self._trunk_at(config, res)
        if new is None or new == name:
            return ""
        return (
            f"the trunk becomes {new}, timm's {name} network at {res.px}: open_clip builds a timm trunk at the size "
            "its architecture states"
        )

    def stated_sizes(self, config: dict[str, Any]) -> tuple[Size | None, int | None] | None:
        vision = self._vision(config)
        image, patch = vision.get("image_size"), vision.get("patch_size")
        size = None if image is None else Size.from_json(image)
        if image is not None and size is None:
            raise InputError(f"open_clip_config.json has vision_cfg.image_size {image!r}, not an int or [H, W]")
        if self.trunk:
            kwargs, name = self._kwargs(config), str(vision.get("timm_model_name"))
            _, stem, built = timm_arch(name)  # timm builds vit_so400m_patch14_siglip_384 at 384 px
            if self._newer(config):
                stated = kwargs.get("img_size")
                trunk = None if stated is None else Size.from_json(stated)
                if stated is not None and trunk is None:
                    raise InputError(
                        f"open_clip_config.json has timm_model_kwargs.img_size {stated!r}, not an int or [H, W]"
                    )
                said = "timm_model_kwargs.img_size {}; open_clip builds the trunk from timm_model_kwargs"
            else:
                trunk = Size.square(built) if built is not None and stem in TIMM_SIZES else None
                said = f"open_clip {OPEN_CLIP_RELEASE} builds the trunk {name} at {{}}"
            if trunk is not None and size is not None and trunk != size:
                raise InputError(
                    f"open_clip_config.json says vision_cfg.image_size {size.px} but {said.format(trunk.px)}: "
                    "make them agree"
                )
            size = trunk or size or (Size.square(built) if built is not None else None)
            patch = kwargs.get("patch_size")
            if patch is None:
                patch = timm_name_patch(name)
        if isinstance(patch, list) and len(patch) == 2 and patch[0] == patch[1]:
            patch = patch[0]
        if patch is not None and (type(patch) is not int or patch <= 0):
            raise InputError(f"open_clip_config.json has vision_cfg.patch_size {patch!r}, not a positive integer")
        return size, patch

    def set_size(self, config: dict[str, Any], res: Size, patch: int) -> None:
        vision = self._vision(config)
        if self.trunk and not self._newer(config):
            name = self._trunk_at(config, res)
            if name is None:
                raise UsageError(self.refusal(config, res))
            vision["timm_model_name"] = name
        vision["image_size"] = res.json()
        preprocess = config.get("preprocess_cfg")
        if isinstance(preprocess, dict) and preprocess.get("size") is not None:  # open_clip overrides it anyway
            preprocess["size"] = res.json()
        if self._newer(config):
            vision["timm_model_kwargs"] = {**self._kwargs(config), "img_size": res.json()}
        elif not self.trunk:
            vision.setdefault("patch_size", patch)

    def prefix_rows(self, rows: int, cells: int, tokens: dict[str, tuple[int, ...]]) -> int:
        return timm_prefix(rows, cells, tokens, self.pos_suffix) if self.trunk else self.num_prefix_tokens

    def vision_only_problem(self, names: list[str], projection: bool) -> str:
        return f"{self.name} checkpoints have no vision-only layout that {self.name} loads; leave {{vision_only}} out"


OPEN_CLIP = OpenClipFamily(
    name="open_clip",
    square_too="not its timm trunks",
    pos_suffix="visual.positional_embedding",
    patch_suffix="visual.conv1.weight",
    num_prefix_tokens=1,  # the class token, always (a timm trunk: what its table holds beyond the grid)
    default_image_size=224,  # open_clip's CLIPVisionCfg
    default_patch_size=16,
    antialias=True,
    runtime="open_clip's `resize_pos_embed` (antialias; open_clip applies it on load)",
    config_file="open_clip_config.json",
    library="open_clip",
    loader="`open_clip`",
    weight_files=("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
)
