#!/usr/bin/env bash
# Downloads into .gpu/whl the Python 3.12 wheels the GPU machine lacks for running Blaze AI from source
# (and its CUDA tests), at the versions of this checkout's .venv. Run from the project root after
# `make install`; benchmarks/gpu.sh installs them on the GPU machine. See docs/gpu.md.
set -euo pipefail
dir=${1:-.gpu/whl}
mkdir -p "$dir"
pkgs="fastapi starlette pydantic pydantic_core typing-inspection annotated-types uvicorn httptools gguf
diffusers transformers huggingface_hub httpx2 httpcore2 truststore tomlkit hf-xet kernels opentelemetry-api
importlib_metadata llguidance pytest pluggy iniconfig hypothesis sortedcontainers pytest-asyncio pytest-timeout
openai jiter distro sniffio"
for p in $pkgs; do
  v=$(.venv/bin/pip show "$p" 2>/dev/null | awk '/^Version:/{print $2}')
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_31_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dir" "$p${v:+==$v}" 2>&1 | grep -v '^WARNING' || true
done
du -sh "$dir"
