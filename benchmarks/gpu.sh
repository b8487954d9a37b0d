#!/usr/bin/env bash
# One run on a CUDA machine: install the carried wheels, build random-weight models in SmolLM2-135M's
# and SmolLM2-1.7B's shapes, run the CUDA tests, the in-process benchmark (Blaze's decode step and
# engine beside transformers' continuous batching) and `blaze serve` + `blaze bench` at 64 and 256
# clients. Every result lands in $OUT (default benchmarks/results/gpu-run). Well under 10 minutes.
#
# Prepare on the development machine (see docs/gpu.md): `make install`, `bash benchmarks/gpu_wheels.sh`,
# `bash benchmarks/gpu.sh --prepare`, then carry `.gpu` to the GPU machine and run `bash benchmarks/gpu.sh`.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu-run}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [[ ${1:-} == --prepare ]]; then  # copy SmolLM2's tokenizer and the tiny built-in into .gpu
  .venv/bin/python -c "from blaze_ai.engines.llm import builtins as b; b.materialize('builtin:smollm2-135m'); b.materialize('builtin:tiny-llama')"
  cache=$(.venv/bin/python -c "from blaze_ai.engines.llm import builtins as b; print(b.cache_dir())")
  mkdir -p .gpu/tok .gpu/cache/models
  for f in chat_template.jinja config.json generation_config.json tokenizer.json tokenizer_config.json; do
    cp "$cache/models/smollm2-135m-v1/$f" .gpu/tok/ 2>/dev/null || true
  done
  cp -r "$cache/models/tiny-llama-v1" .gpu/cache/models/
  du -sh .gpu
  exit 0
fi

mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
PY=${PYTHON:-python3}
started=$(date +%s)
stage() { echo "== $(( $(date +%s) - started ))s: $*"; }

stage "install wheels"
$PY -m pip install -q --no-index --no-deps --no-compile --target .gpu/site .gpu/whl/*.whl
export PYTHONPATH=$ROOT/.gpu/site:$ROOT/src:$ROOT/benchmarks HF_HUB_OFFLINE=1 BLAZE_CACHE_DIR=$ROOT/.gpu/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  >> "$OUT/gpu.txt"
cat "$OUT/gpu.txt"

stage "build models"
$PY benchmarks/make_random_llama.py .gpu/m135 135m .gpu/tok
$PY benchmarks/make_random_llama.py .gpu/m17 1.7b .gpu/tok

stage "CUDA tests"
timeout 120 $PY -m pytest -q -p no:cacheprovider tests/engines/llm/test_paged.py 2>&1 | tail -15 \
  | tee "$OUT/tests.txt"

stage "in process, 1.7B shape"
timeout 240 $PY benchmarks/gpu_throughput.py --model .gpu/m17 --rows 64,256 --compare-hf --json "$OUT/inproc-1.7b.json" \
  2>&1 | grep -v '^Loading' | tail -5
stage "in process, 135M shape"
timeout 120 $PY benchmarks/gpu_throughput.py --model .gpu/m135 --rows 256 --skip-transformers --check-greedy \
  --json "$OUT/inproc-135m.json" 2>&1 | grep -v '^Loading' | tail -5

serve() {  # serve MODEL_DIR on port 8000 and wait until ready
  cat > "$OUT/serve-$2.yaml" <<YAML
server: {host: 127.0.0.1, max_concurrency: 2048, request_timeout_s: 600, model_memory_budget_mb: 100000}
cache: {mode: "off"}
models:
  - name: bench
    kind: llm
    llm: {source: "$1", device: cuda, dtype: bfloat16, max_batch_size: 256, max_tokens_in_flight: 65536,
          max_queued_requests: 4096, cuda_graph_max_context: 1024}
YAML
  $PY -m blaze_ai.cli serve --config "$OUT/serve-$2.yaml" --port 8000 > "$OUT/serve-$2.log" 2>&1 &
  server=$!
  for _ in $(seq 240); do
    $PY -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health/ready', timeout=1)" 2>/dev/null \
      && return 0
    sleep 0.5
  done
  echo "server $2 did not become ready"; tail -20 "$OUT/serve-$2.log"; return 1
}
bench() {  # NAME REQUESTS CLIENTS [--stream]
  timeout 180 $PY -m blaze_ai.cli bench --url http://127.0.0.1:8000 --model bench --max-tokens 128 \
    --requests "$2" --concurrency "$3" ${4:-} --json "$OUT/http-$1.json" | tail -4
}

stage "HTTP, 1.7B shape"
if serve "$ROOT/.gpu/m17" 1.7b; then
  bench 1.7b-64 128 64
  bench 1.7b-256 512 256
  bench 1.7b-256-stream 512 256 --stream
fi
kill "$server" 2>/dev/null; wait "$server" 2>/dev/null

stage "HTTP, 135M shape"
if serve "$ROOT/.gpu/m135" 135m; then
  bench 135m-256 512 256
  bench 135m-256-stream 512 256 --stream
fi
kill "$server" 2>/dev/null; wait "$server" 2>/dev/null
stage "done"
