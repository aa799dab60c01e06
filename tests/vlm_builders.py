"""Tiny VLM checkpoints in the hub layouts, built with transformers' own classes: LLaVA-1.5 (the llava-hf
naming, or the naming transformers 5 writes), LLaVA-NeXT, PaliGemma, InternVL. LLaVA's have their whole
processor (a word-level tokenizer with the image token); PaliGemma's and InternVL's their image processor and
the token count their processors read (PaliGemmaProcessor and InternVLProcessor cannot be built offline here:
the first rebuilds Gemma's tokenizer, the second needs torchvision)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1,
        "num_hidden_layers": 1, "vocab_size": 64, "head_dim": 16}  # fmt: skip
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2}
IMAGE_TOKEN = 63
VLMS = ("llava", "llava-next", "paligemma", "internvl")


def tokenizer(image_token: str | None = "<image>", extra: tuple[str, ...] = ()) -> Any:
    """A word-level tokenizer: w0…w53, <unk>, <bos>, <eos>, <pad>, `extra` special tokens and the image
    token (id 63; None: none)."""
    import transformers
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(54)}
    vocab.update({"<unk>": 58, "<bos>": 59, "<eos>": 60, "<pad>": 61, **{t: 54 + i for i, t in enumerate(extra)}})
    specials = [*extra, *([image_token] if image_token else [])]
    if image_token:
        vocab[image_token] = IMAGE_TOKEN
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (*specials, "<bos>")])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<bos>",
                                                eos_token="<eos>", pad_token="<pad>",
                                                additional_special_tokens=specials)  # fmt: skip


def model_and_processor(kind: str, image_size: int, patch: int = 14) -> tuple[Any, Any]:
    import transformers as t

    vision = dict(VISION, image_size=image_size, patch_size=patch)
    square = {"height": image_size, "width": image_size}
    if kind == "llava":
        config = t.LlavaConfig(vision_config=dict(vision, model_type="clip_vision_model"),
                               text_config=dict(TEXT, model_type="llama"), image_token_index=IMAGE_TOKEN)  # fmt: skip
        images = t.CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=square)
        processor = t.LlavaProcessor(image_processor=images, tokenizer=tokenizer(), patch_size=patch,
                                     vision_feature_select_strategy="default", num_additional_image_tokens=1)  # fmt: skip
        return t.LlavaForConditionalGeneration(config), processor
    if kind == "llava-next":
        pinpoints = [[image_size, 2 * image_size], [2 * image_size, image_size], [2 * image_size, 2 * image_size]]
        config = t.LlavaNextConfig(vision_config=dict(vision, model_type="clip_vision_model"),
                                   text_config=dict(TEXT, model_type="llama"), image_token_index=IMAGE_TOKEN,
                                   image_grid_pinpoints=pinpoints)  # fmt: skip
        images = t.LlavaNextImageProcessor(size={"shortest_edge": image_size}, crop_size=square,
                                           image_grid_pinpoints=pinpoints)  # fmt: skip
        processor = t.LlavaNextProcessor(image_processor=images, tokenizer=tokenizer(), patch_size=patch,
                                         vision_feature_select_strategy="default", num_additional_image_tokens=1)  # fmt: skip
        return t.LlavaNextForConditionalGeneration(config), processor
    if kind == "paligemma":
        cells = (image_size // patch) ** 2
        config = t.PaliGemmaConfig(vision_config=dict(vision, model_type="siglip_vision_model", projection_dim=32),
                                   text_config=dict(TEXT, model_type="gemma", num_image_tokens=cells),
                                   image_token_index=IMAGE_TOKEN, projection_dim=32)  # fmt: skip
        images = t.SiglipImageProcessor(size=square)
        images.image_seq_length = cells  # google/paligemma-*'s preprocessor_config.json states it
        return t.PaliGemmaForConditionalGeneration(config), images
    if kind == "internvl":
        config = t.InternVLConfig(vision_config=dict(vision, image_size=[image_size] * 2, patch_size=[patch] * 2,
                                                     model_type="internvl_vision"),
                                  text_config=dict(TEXT, model_type="qwen2"), image_token_id=IMAGE_TOKEN,
                                  downsample_ratio=0.5, image_seq_length=(image_size // patch // 2) ** 2)  # fmt: skip
        images = t.GotOcr2ImageProcessor(size=square, crop_to_patches=False)
        return t.InternVLForConditionalGeneration(config), images
    if kind == "gemma3":  # mm_tokens_per_image 4: the grid is pooled to 2×2
        config = t.Gemma3Config(vision_config=dict(vision, model_type="siglip_vision_model"),
                                text_config=dict(TEXT, model_type="gemma3_text"), mm_tokens_per_image=4,
                                image_token_index=IMAGE_TOKEN)  # fmt: skip
        return t.Gemma3ForConditionalGeneration(config), t.SiglipImageProcessor(size=square)
    raise ValueError(kind)


# the llava-hf conversions' names (transformers 4): what the Hub's llava-1.5 repos hold
LLAVA_HF = (("model.vision_tower.", "vision_tower.vision_model."), ("vision_tower.", "vision_tower.vision_model."),
            ("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
            ("model.multi_modal_projector.", "multi_modal_projector."))  # fmt: skip


def build_vlm(folder: Path, kind: str, *, image_size: int = 28, seed: int = 0, hub_names: bool = False,
              shard: int = 0) -> Path:  # fmt: skip
    """Write a tiny `kind` VLM with its processor into `folder`; `hub_names`: the llava-hf key names;
    `shard`: split the weights into files of about this many bytes."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, processor = model_and_processor(kind, image_size)
        g = torch.Generator().manual_seed(seed)
        with (
            torch.no_grad()
        ):  # transformers starts some tables at zero (InternVL's): an exact test of those proves nothing
            for p in model.parameters():
                if not p.any():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        model.eval().save_pretrained(folder, max_shard_size=shard or "5GB")
        processor.save_pretrained(folder)
    if kind == "internvl":  # InternVLProcessor needs torchvision here: its file as it writes it
        seq = (image_size // 14 // 2) ** 2
        (folder / "processor_config.json").write_text(json.dumps(
            {"image_seq_length": seq, "processor_class": "InternVLProcessor"}, indent=2) + "\n")  # fmt: skip
    if hub_names:
        _rename(folder, LLAVA_HF)
    return folder


def _rename(folder: Path, renames: tuple[tuple[str, str], ...]) -> None:
    """Rename the tensors of a single-file checkpoint by prefix (to the names older conversions wrote)."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    state = load_file(path)

    def renamed(name: str) -> str:
        for old, new in renames:
            if name.startswith(old) and not name.startswith(new):
                return new + name[len(old) :]
        return name

    save_file({renamed(k): v.contiguous() for k, v in state.items()}, path, metadata={"format": "pt"})


def prompt(processor: Any) -> str:
    """A prompt with one image, as each processor wants it."""
    return f"{getattr(processor, 'image_token', '<image>')} w1 w2"


def config_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text())


# build_mlp.py of internlm/internlm-xcomposer2-vl-7b, the lines that matter (its resize_pos; line 72 is
# `new_size = 35`): what xcr rewrites, and what tests/test_vlm.py reads back to load the output as XComposer does
BUILD_MLP = """import torch
import torch.nn as nn
from transformers import CLIPVisionModel


class CLIPVisionTower(nn.Module):

    def __init__(self, vision_tower):
        super().__init__()
        self.is_loaded = False
        self.is_resize_pos = False
        self.vision_tower_name = vision_tower
        self.select_layer = -1
        self.select_feature = 'patch'
        self.load_model()
        self.resize_pos()

    def load_model(self):
        self.vision_tower = CLIPVisionModel.from_pretrained(self.vision_tower_name)
        self.vision_tower.requires_grad_(False)
        self.is_loaded = True

    def resize_pos(self):
        pos_embed_checkpoint = self.vision_tower.vision_model.embeddings.position_embedding.weight
        pos_embed_checkpoint = pos_embed_checkpoint.unsqueeze(0)
        orig_size = 24
        new_size = {new_size}
        if pos_embed_checkpoint.shape[1] == new_size**2 + 1:
            self.is_resize_pos = True
        else:
            embedding_size = pos_embed_checkpoint.shape[-1]
            num_extra_tokens = 1
            new_num = new_size**2 + num_extra_tokens
            print('Position interpolate from %dx%d to %dx%d' % (orig_size, orig_size, new_size, new_size))
            extra_tokens = pos_embed_checkpoint[:, :num_extra_tokens]
            pos_tokens = pos_embed_checkpoint[:, num_extra_tokens:]
            pos_tokens = pos_tokens.reshape(-1, orig_size, orig_size, embedding_size).permute(0, 3, 1, 2)
            pos_tokens = torch.nn.functional.interpolate(
                pos_tokens, size=(new_size, new_size), mode='bicubic', align_corners=False)
            pos_tokens = pos_tokens.permute(0, 2, 3, 1).flatten(1, 2)
            new_pos_embed = torch.cat((extra_tokens, pos_tokens), dim=1)
            new_pos_embed = new_pos_embed.squeeze(0)
            self.vision_tower.vision_model.embeddings.position_embedding = torch.nn.Embedding(new_num, 1024)
            self.vision_tower.vision_model.embeddings.position_embedding.weight = torch.nn.Parameter(
                new_pos_embed.to(pos_embed_checkpoint.dtype))
            self.vision_tower.vision_model.embeddings.position_ids = torch.arange(new_num).expand((1, -1))
            self.is_resize_pos = True
"""
XCOMPOSER_WIDTH = 128  # two heads of 64, as CLIP's towers have


def xcomposer_tower(image_size: int, seed: int = 0) -> Any:
    """The CLIP tower XComposer2 builds, at a tiny width: a CLIPVisionModel at `image_size`."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.CLIPVisionConfig(hidden_size=XCOMPOSER_WIDTH, intermediate_size=64, num_attention_heads=2,
                                           num_hidden_layers=2, image_size=image_size, patch_size=14,
                                           hidden_act="quick_gelu")  # fmt: skip
    return transformers.CLIPVisionModel(config).eval()


def build_xcomposer(folder: Path, *, image_size: int = 70, code: str | None = None) -> Path:
    """internlm-xcomposer2-vl-7b's layout at tiny width: `.bin` shards (tower `vit.vision_tower.vision_model.…`
    as transformers 4 named it, `vision_proj.*`, InternLM2's `model.*`, `output.weight`), config.json with
    `img_size`, and build_mlp.py whose `new_size` is the stored grid's side (`code`: another build_mlp.py)."""
    folder.mkdir(parents=True)
    tower = {f"vit.vision_tower.vision_model.{k}": v for k, v in xcomposer_tower(image_size).state_dict().items()}
    g = torch.Generator().manual_seed(1)
    rest = {"vision_proj.0.weight": (32, XCOMPOSER_WIDTH), "vision_proj.0.bias": (32,), "vision_proj.2.weight": (32, 32),
            "vision_proj.2.bias": (32,), "model.tok_embeddings.weight": (64, 32), "model.norm.weight": (32,),
            "model.layers.0.attention.wqkv.weight": (96, 32), "output.weight": (64, 32)}  # fmt: skip
    llm = {k: torch.randn(s, generator=g) for k, s in rest.items()}
    shards = [tower, llm]
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
        torch.save({k: v.contiguous() for k, v in shard.items()}, folder / name)
        weight_map.update({k: name for k in shard})
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = {"architectures": ["InternLMXComposer2ForCausalLM"], "model_type": "internlm2", "img_size": image_size,
              "hidden_size": 32, "auto_map": {"AutoModel": "modeling_internlm_xcomposer2.InternLMXComposer2ForCausalLM"},
              "torch_dtype": "float32"}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "build_mlp.py").write_text(
        code if code is not None else BUILD_MLP.replace("{new_size}", str(image_size // 14))
    )
    (folder / "modeling_internlm_xcomposer2.py").write_text("# the model's code (not run by the tests)\n")
    return folder


def build_internvl_chat(folder: Path, *, image_size: int = 56) -> Path:
    """InternVL2/2.5's remote-code layout (`internvl_chat`): the tower at `vision_model.` with its table a
    Parameter `vision_model.embeddings.position_embedding` [1, 1+N, C], `mlp1.*`, `language_model.*`; config.json
    with `vision_config` (`intern_vit_6b`), `force_image_size` and `downsample_ratio`; no processor files."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(2)
    rows, width = (image_size // 14) ** 2 + 1, 32
    shapes = {"vision_model.embeddings.class_embedding": (1, 1, width),
              "vision_model.embeddings.patch_embedding.weight": (width, 3, 14, 14),
              "vision_model.embeddings.patch_embedding.bias": (width,),
              "vision_model.embeddings.position_embedding": (1, rows, width),
              "vision_model.encoder.layers.0.attn.qkv.weight": (3 * width, width),
              "vision_model.encoder.layers.0.mlp.fc1.weight": (64, width),
              "mlp1.1.weight": (32, 4 * width), "language_model.model.embed_tokens.weight": (64, 32),
              "language_model.lm_head.weight": (64, 32)}  # fmt: skip
    save_file({k: torch.randn(s, generator=g) for k, s in shapes.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    config = {"architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "force_image_size": image_size,
              "downsample_ratio": 0.5, "select_layer": -1, "template": "internvl2_5",
              "auto_map": {"AutoModel": "modeling_internvl_chat.InternVLChatModel"},
              "vision_config": {"architectures": ["InternVisionModel"], "model_type": "intern_vit_6b",
                                "image_size": image_size, "patch_size": 14, "hidden_size": width},
              "llm_config": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "modeling_internvl_chat.py").write_text("# the model's code (not run by the tests)\n")
    return folder
