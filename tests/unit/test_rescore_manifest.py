"""Manifests in every format, URIs, the plan of what is left, dedupe keys, and the result -> row conversion."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidjudge.client import types as client_types
from vidjudge.client.rescore import manifest as mf
from vidjudge.client.rescore import sources
from vidjudge.client.rescore.dedupe import Deduper, job_key
from vidjudge.client.rescore.rows import SCHEMA, error_fields, item_rows, result_fields, run_fields, to_table
from vidjudge.client.rescore.types import DimensionSpec, Item, JudgeInfo
from vidjudge.errors import InvalidRequest, InvalidVideo
from vidjudge.server import pipeline as server_pipeline
from vidjudge.server import types as server_types

JUDGE = JudgeInfo("tiny", "ab" * 32, {"visual_quality": DimensionSpec("visual_quality", inputs=()),
                                      "text_alignment": DimensionSpec("text_alignment", requires_prompt=True,
                                                                      inputs=()),
                                      "love_qa": DimensionSpec("love_qa", inputs=("question",))})
ROWS = [{"path": "videos/a.mp4", "id": "a", "prompt": "a cat", "generator": "g1", "question": "Is it a cat?"},
        {"path": "videos/b.mp4", "id": None, "prompt": None, "generator": "g2", "question": None}]


def write_all_formats(d):
    d.mkdir(exist_ok=True)
    lines = ["path,id,prompt,generator,question"] + [
        ",".join("" if r[k] is None else str(r[k]) for k in ("path", "id", "prompt", "generator", "question"))
        for r in ROWS]
    (d / "m.csv").write_text("\n".join(lines) + "\n")
    (d / "m.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n"
                                       for r in ROWS))
    pq.write_table(pa.Table.from_pylist(ROWS), d / "m.parquet")
    return [d / "m.csv", d / "m.jsonl", d / "m.parquet"]


def test_every_format_reads_to_the_same_canonical_table(tmp_path):
    tables = [mf.read_manifest(str(p)).to_pylist() for p in write_all_formats(tmp_path)]
    assert tables[0] == tables[1] == tables[2]
    a, b = tables[0]
    assert a["id"] == "a" and a["path"] == str(tmp_path / "videos/a.mp4")  # relative to the manifest
    assert b["id"] == "videos/b.mp4"  # no id: the path as written
    assert json.loads(a["inputs"]) == {"question": "Is it a cat?"} and json.loads(b["inputs"]) == {}


def test_manifest_through_a_uri(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/rescore-test/m.jsonl", b'{"path": "clips/x.mp4", "generator": "g"}\n')
    fs.pipe("/rescore-test/clips/x.mp4", b"not really a video")
    t = mf.read_manifest("memory://rescore-test/m.jsonl").to_pylist()
    assert t[0]["path"] == "memory://rescore-test/clips/x.mp4"
    assert sources.read_bytes(t[0]["path"], 1 << 20) == b"not really a video"
    with pytest.raises(InvalidRequest) as e:
        sources.read_bytes("memory://rescore-test/clips/none.mp4", 1 << 20)
    assert e.value.reason == "file_not_found"


def test_manifest_errors_name_the_fix(tmp_path):
    (tmp_path / "dup.csv").write_text("path,id\na.mp4,x\nb.mp4,x\n")
    with pytest.raises(mf.ManifestError, match="more than once"):
        mf.read_manifest(str(tmp_path / "dup.csv"))
    (tmp_path / "nopath.csv").write_text("video,id\na.mp4,x\n")
    with pytest.raises(mf.ManifestError, match="no `path` column"):
        mf.read_manifest(str(tmp_path / "nopath.csv"))
    with pytest.raises(mf.ManifestError, match="format"):
        mf.read_manifest(str(tmp_path / "m.txt"))
    with pytest.raises(mf.ManifestError, match="no such manifest"):
        mf.read_manifest(str(tmp_path / "absent.csv"))


def test_read_bytes_refuses_empty_and_large_files(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "big.mp4").write_bytes(b"x" * 2048)
    with pytest.raises(InvalidVideo) as e:
        sources.read_bytes(str(tmp_path / "empty.mp4"), 1024)
    assert e.value.reason == "empty_input"
    with pytest.raises(InvalidVideo) as e:
        sources.read_bytes(str(tmp_path / "big.mp4"), 1024)
    assert e.value.reason == "too_large"
    with pytest.raises(InvalidRequest) as e:
        sources.read_bytes(str(tmp_path), 1024)
    assert e.value.reason == "file_not_found"


def test_plan_skips_what_is_committed_and_spreads_inputs(tmp_path):
    table = mf.read_manifest(str(write_all_formats(tmp_path)[0]))
    items, skipped = mf.plan(table, JUDGE, (), committed={("a", "visual_quality")})
    assert skipped == 0
    a, b = items
    # a has a prompt: every dimension but the committed one; the question goes to the QA dimension only.
    assert a.dimensions == ("text_alignment", "love_qa") and a.inputs == {"love_qa": {"question": "Is it a cat?"}}
    # b has neither prompt nor question: not text_alignment, not love_qa (the server's rule for a request
    # naming no dimension: only those whose prompt and inputs it has).
    assert b.dimensions == ("visual_quality",) and b.inputs == {}
    done = {(i, d) for i in ("a", "videos/b.mp4") for d in JUDGE.dimensions}
    assert mf.plan(table, JUDGE, (), done) == ([], 2)
    # Named explicitly, a dimension is planned even where its input is missing: the server's error says so.
    items, _ = mf.plan(table, JUDGE, ("love_qa",), set())
    assert [i.dimensions for i in items] == [("love_qa",), ("love_qa",)] and items[1].inputs == {}
    items, _ = mf.plan(table, JUDGE, ("visual_quality",), set())
    assert [i.dimensions for i in items] == [("visual_quality",), ("visual_quality",)]
    # A plain NAME goes to the dimensions that take it; DIM.NAME to DIM only (dots in names are fine).
    judge = JudgeInfo("j", "cd", {"visual_quality": DimensionSpec("visual_quality"),
                                  "love.qa": DimensionSpec("love.qa", inputs=("question",))})
    assert mf.dimension_inputs({"question": "q", "love.qa.choices": "yes,no"}, ("visual_quality", "love.qa"),
                               judge) == {"love.qa": {"question": "q", "choices": "yes,no"}}


def test_dedupe_key_ignores_the_prompt_only_when_no_dimension_reads_it():
    a = Item("a", "a.mp4", prompt="one", dimensions=("visual_quality",))
    b = Item("b", "b.mp4", prompt="two", dimensions=("visual_quality",))
    assert job_key("s", a, JUDGE) == job_key("s", b, JUDGE)
    a2 = Item("a", "a.mp4", prompt="one", dimensions=("text_alignment",))
    b2 = Item("b", "b.mp4", prompt="two", dimensions=("text_alignment",))
    assert job_key("s", a2, JUDGE) != job_key("s", b2, JUDGE)
    assert job_key("s", a, JUDGE) != job_key("t", a, JUDGE)
    d = Deduper(cache_size=1)
    assert d.claim("k", a).first and not d.claim("k", b).first
    assert d.finish("k", "result", keep=True) == [b]
    assert d.claim("k", a).cached == "result"
    d.claim("j", a)
    d.finish("j", "other", keep=True)
    assert d.claim("k", a).first  # evicted from the bounded cache: scored again, never wrong


def _server_result():
    return server_pipeline.ScoreResult(
        "tiny", [server_types.DimensionScore("visual_quality", 3.5, 1.0, 5.0, levels=["good", "bad"], probabilities=[0.75, 0.25])],
        server_types.StageTimings(decode_s=0.1, encode_s=0.2, llm_s=0.3, total_s=0.7),
        server_types.VideoInfo(width=160, height=120, duration_s=2.0, avg_fps=8.0, codec="h264"))


def test_server_and_client_results_become_the_same_columns():
    server = result_fields(_server_result(), "host:1")
    client = result_fields(client_types.ScoreResult(
        "tiny", {"visual_quality": client_types.DimensionScore("visual_quality", 3.5, 1.0, 5.0,
                                                               {"good": 0.75, "bad": 0.25})},
        {"queue_s": 0.0, "decode_s": 0.1, "preprocess_s": 0.0, "encode_s": 0.2, "llm_s": 0.3, "total_s": 0.7},
        {"width": 160, "height": 120, "duration_s": 2.0, "avg_fps": 8.0, "codec": "h264", "rotation": 0,
         "frames_decoded": 16, "decoder": "software"}), "host:1")
    for f in (server, client):
        f[0].pop("video_decoder")
    assert server == client
    row = server[0]
    assert row["levels"] == ["good", "bad"] and row["probabilities"] == [0.75, 0.25]
    assert row["status"] == "OK" and row["answer"] is None and row["llm_s"] == pytest.approx(0.3)


def test_fields_of_newer_judges_become_columns_when_present():
    @dataclass
    class QaScore(server_types.DimensionScore):  # the judge-seam DimensionScore's extra fields
        head: str = ""
        answer: str = ""
        answer_probability: float = 0.0
        rationale: str = ""

    r = _server_result()
    r.scores = [QaScore("love_qa", 1.0, 0.0, 1.0, head="yes_no", answer="Yes", answer_probability=0.9,
                        rationale="a cat is visible")]
    (row,) = result_fields(r)
    assert (row["head"], row["answer"], row["answer_probability"], row["rationale"]) == \
        ("yes_no", "Yes", 0.9, "a cat is visible")


def test_rows_fit_the_schema_for_results_and_errors():
    item = Item("a", "/v/a.mp4", prompt="p", generator="g", dimensions=("visual_quality", "text_alignment"))
    run = run_fields(video_sha256="00", video_bytes=1, deduplicated=False, bundle="tiny", bundle_sha256="ab",
                     mode="bundle", run_id="r", version="0")
    ok = item_rows(item, result_fields(_server_result()), run)
    bad = item_rows(item, error_fields(InvalidVideo("truncated", reason="undecodable"), item.dimensions), run)
    t = to_table(ok + bad)
    assert t.schema == SCHEMA and t.num_rows == 3
    assert t.column("status").to_pylist() == ["OK", "INVALID_ARGUMENT", "INVALID_ARGUMENT"]
    assert t.column("reason").to_pylist() == [None, "undecodable", "undecodable"]
