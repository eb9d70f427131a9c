"""A client written only from the .proto (stubs generated here, no vidjudge import) can call Score."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROTO = Path(__file__).resolve().parents[2] / "proto" / "vidjudge" / "v1" / "judge.proto"

CLIENT = r'''
import json, sys
import grpc
import judge_pb2, judge_pb2_grpc
target, video = sys.argv[1], sys.argv[2]
with grpc.insecure_channel(target) as ch:
    stub = judge_pb2_grpc.JudgeStub(ch)
    req = judge_pb2.ScoreRequest(video=judge_pb2.Video(data=open(video, "rb").read()),
                                 prompt="a gradient", dimensions=["visual_quality", "text_alignment"])
    resp = stub.Score(req, timeout=120)
    qa = stub.Score(judge_pb2.ScoreRequest(
        video=judge_pb2.Video(data=open(video, "rb").read()), dimensions=["qa"],
        inputs={"qa": judge_pb2.DimensionInput(question="Is the picture a gradient?")}), timeout=120).results[0]
    try:
        stub.Score(judge_pb2.ScoreRequest(video=judge_pb2.Video(data=b"junk" * 10)), timeout=60)
        bad = None
    except grpc.RpcError as e:
        bad = [e.code().name, dict(e.trailing_metadata()).get("vidjudge-reason")]
assert not any(m.startswith("vidjudge") for m in sys.modules), "the client imported vidjudge"
print(json.dumps({"scores": {r.dimension: r.score for r in resp.results}, "bad": bad,
                  "qa": [qa.head, qa.answer, qa.answer_probability, [lv.level for lv in qa.levels]]}))
'''


def test_client_from_the_proto_alone(server, video_dir, tmp_path):
    shutil.copy(PROTO, tmp_path / "judge.proto")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(tmp_path), f"--python_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", str(tmp_path / "judge.proto")], check=True)
    (tmp_path / "client.py").write_text(CLIENT)
    # VIDJUDGE_TORCHVISION_STUB=0: the dev venv's opt-in .pth (make test) must not import vidjudge either.
    out = subprocess.run([sys.executable, "client.py",
                          server.address, str(video_dir / "gradient.mp4")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=180,
                         env=dict(os.environ, VIDJUDGE_TORCHVISION_STUB="0"))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(got["scores"]) == {"visual_quality", "text_alignment"}
    assert all(1.0 <= s <= 5.0 for s in got["scores"].values())
    assert got["bad"] == ["INVALID_ARGUMENT", "not_a_video"]
    head, answer, prob, levels = got["qa"]
    assert head == "yes_no" and answer in ("yes", "no") and 0.5 <= prob <= 1.0 and levels == ["yes", "no"]
