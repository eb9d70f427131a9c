#!/usr/bin/env bash
# Run HERE (with network), in the repository root, before a GPU check: fills .whl/ with what the GPU
# machine lacks (DESIGN.md 5, /work/.library/device/KINDS.md: Python 3.12, torch 2.11 + CUDA,
# transformers 5.17, onnx/onnxruntime/peft/typer/rich/grpcio present; no pydantic, no PyAV).
# Everything travels with the working tree (64 MiB per call): the script refuses more.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
# The versions match the project venv the tests ran with (make test).
PY=${PYTHON:-.venv/bin/python}
# vidjudge itself (pure Python; its own dependencies are checked on the machine, not resolved here).
$PY -m pip wheel -q --no-deps -w .whl .
# Missing there: PyAV (NVDEC and software decode), pydantic (+ core, its typing helpers), pydantic-settings
# (+ python-dotenv), grpc health checking and reflection; grpcio and protobuf at the versions the committed
# stubs were generated for (an older runtime refuses newer gencode). Same versions as the venv here.
v() { $PY -c "import importlib.metadata as m; print(m.version('$1'))"; }
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "av==$(v av)" "pydantic==$(v pydantic)" "pydantic-core==$(v pydantic-core)" "annotated-types==$(v annotated-types)" \
  "typing-inspection==$(v typing-inspection)" "pydantic-settings==$(v pydantic-settings)" \
  "python-dotenv==$(v python-dotenv)" "grpcio==$(v grpcio)" "grpcio-health-checking==$(v grpcio-health-checking)" \
  "grpcio-reflection==$(v grpcio-reflection)" "protobuf==$(v protobuf)"
size=$(du -sm .whl | cut -f1)
ls -1 .whl
echo "wheels: ${size} MiB"
if [ "$size" -gt 56 ]; then echo "too large to travel with the working tree (64 MiB in all)"; exit 1; fi
