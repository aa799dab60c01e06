"""Regenerate the tiny demo checkpoint shipped in demo/ (`make demo-checkpoint`).

The layout of openai/clip-vit-large-patch14-336 at tiny width: pytorch_model.bin only (no
safetensors), the openai config with its legacy `vision_config_dict` / `text_config_dict`, int
preprocessor sizes, `position_ids` buffers, the slow and fast tokenizer files. One deliberate
difference: `text_config_dict` states `vocab_size`. The real one leaves it out because its
vocabulary has the default size (49408); transformers fills what `text_config_dict` leaves out
with defaults and lets them override `text_config`, so a 99-token vocabulary must be stated there.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.builders import build

README = """---
license: mit
language:
- en
tags:
- clip
- vision
- tiny
---
# clip-vit-tiny-patch14-336

A tiny random CLIP (vision width 32, 2 layers) with the layout of openai/clip-vit-large-patch14-336:
a 24×24 grid of 14-px patches plus a class token, pytorch_model.bin only. For `make demo` and tests;
its weights are random, so it computes nothing meaningful, except its position table: nearby cells are
similar, as in a learned table, so that its picture (`xcr inspect --plot`) shows that structure.
"""


def main(out: Path) -> None:
    from transformers import CLIPTokenizerFast

    shutil.rmtree(out, ignore_errors=True)
    build(out, fmt="bin", seed=336, table="smooth")  # a table with structure: its picture shows it
    CLIPTokenizerFast.from_pretrained(out).backend_tokenizer.save(str(out / "tokenizer.json"))
    (out / ".gitattributes").write_text(
        "# the real repo stores weights with LFS; this tiny demo does not\n*.bin binary\n"
    )
    (out / "README.md").write_text(README)
    print(f"wrote {out}: {sum(f.stat().st_size for f in out.iterdir())} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
