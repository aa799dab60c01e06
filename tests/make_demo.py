"""Regenerate the tiny demo checkpoint shipped in demo/ (`make demo-checkpoint`).

Same layout as openai/clip-vit-large-patch14-336: pytorch_model.bin only (no safetensors),
openai config with vision_config_dict, int preprocessor sizes, position_ids buffers.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.builders import build

if __name__ == "__main__":
    out = Path(sys.argv[1])
    shutil.rmtree(out, ignore_errors=True)
    build(out, fmt="bin", seed=336)
    (out / ".gitattributes").write_text(
        "# the real repo stores weights with LFS; this tiny demo does not\n*.bin binary\n"
    )
    (out / "README.md").write_text(
        "---\nlicense: mit\n---\n# clip-vit-tiny-patch14-336\n\n"
        "A tiny random CLIP (vision width 32, 2 layers) with the layout of openai/clip-vit-large-patch14-336:\n"
        "a 24×24 grid of 14-px patches plus a class token, pytorch_model.bin only. For `make demo` and tests.\n"
    )
    print(f"wrote {out}: {sum(f.stat().st_size for f in out.iterdir())} bytes")
