#!/usr/bin/env bash
# A private python with timm and open_clip, for tests/test_real_libraries.py (`make real-libs`).
# Neither is a dependency of xcr or of its required tests: this python lives apart from .venv.
#   tests/real_libs_venv.sh [DIR]                           (default: .real-libs)
#   XCR_REAL_LIBS_PYTHON=DIR/bin/python make test           (or: .venv/bin/python -m pytest tests/test_real_libraries.py)
# TORCH_REQ as in the Makefile (the CPU build on this project's machines). The versions are the ones the
# tests and docs/families.md speak of: open_clip 3.3.0 is the latest release, timm 1.0.31 the one
# xcomposer_resize/families.py's TIMM_SIZES was read from.
set -euo pipefail
DIR="${1:-.real-libs}"
PYTHON="${PYTHON:-python3}"
TORCH_REQ="${TORCH_REQ:-torch==2.13.0}"
PIP=("$DIR/bin/python" -m pip --disable-pip-version-check -q)

[ -x "$DIR/bin/python" ] || "$PYTHON" -m venv "$DIR"
# one command, torch pinned in it: installed apart, torch would be replaced by whatever build the newest
# torchvision asks for (a multi-GB CUDA one)
"${PIP[@]}" install "$TORCH_REQ" timm==1.0.31 open_clip_torch==3.3.0 safetensors

# pip may bring a torchvision built for CUDA, whose operator registrations fail beside the CPU torch
# ("operator torchvision::nms does not exist") and stop `import timm`. timm and open_clip use none of
# those operators: when torchvision does not import, empty the two files that register them.
if ! "$DIR/bin/python" -c "import torchvision" 2>/dev/null; then
  site=$("$DIR/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  for f in _meta_registrations.py _autograd_registrations.py; do
    if [ -f "$site/torchvision/$f" ]; then : > "$site/torchvision/$f"; fi
  done
fi
"$DIR/bin/python" -c "import timm, open_clip, torch; print('torch', torch.__version__, 'timm', timm.__version__, 'open_clip', open_clip.__version__)"
echo "XCR_REAL_LIBS_PYTHON=$DIR/bin/python"
