#!/usr/bin/env bash
# Regenerates the committed Python stubs from judge.proto. Run after editing the .proto;
# tests/unit/test_proto_stubs.py fails when the committed stubs drift from it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
python -m grpc_tools.protoc -I "$here" --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$here/vidjudge/v1/judge.proto"
