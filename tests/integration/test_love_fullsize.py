"""The LOVE-shaped random bundle builder (benchmarks/love_fullsize.py): the small preset builds in seconds,
loads, and the server scores it; the 9b preset's sizes are InternVL3-9B's."""

from __future__ import annotations

from vidjudge.benchmarks import love_fullsize
from vidjudge.client import JudgeClient
from vidjudge.export.samples import write_video
from vidjudge.server.bundle import load_bundle

from servers import make_config


def test_nine_b_preset_has_internvl3_9b_sizes():
    s = love_fullsize.sizes(love_fullsize.preset("9b"))
    assert 8.7e9 < s["llm_params"] < 8.9e9  # InternLM2-format 48 x 4096 decoder, vocabulary 128142
    assert 0.33e9 < s["vision_params_each"] < 0.35e9  # InternViT-300M + mlp1


def test_small_preset_builds_loads_and_serves(tmp_path):
    from vidjudge.server.app import ServerThread

    out = love_fullsize.build(tmp_path / "love-small", "small")["bundle"]
    b = load_bundle(out)
    assert b.family.name == "love" and len(b.manifest.adapters) == 3
    assert all(s.torch_module() is not None for s in b.family.encoders())
    video = write_video(tmp_path / "v.mp4", width=256, height=240, num_frames=40, fps=8)
    dims = ["love.perception", "love.correspondence", "love.qa"]
    with ServerThread(make_config(b.root, tmp_path, **{"encoder.backend": "torch"})) as s, \
            JudgeClient(s.address) as c:
        r = c.score(video, prompt="a test", dimensions=dims, inputs={"love.qa": {"question": "Is it blue?"}})
    assert set(r.scores) == set(dims) and all(x.ok for x in r.scores.values())
    assert 0.0 <= r.scores["love.perception"].score <= 100.0 and r.scores["love.qa"].answer in ("Yes", "No")
