"""The server refuses a bundle whose format version or checksums do not match, naming the cause."""

import json
import shutil

import pytest

from vidjudge.server.bundle import BundleError, load_bundle


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(tiny_bundle, dst)
    return dst


def test_exported_bundle_loads_with_its_dimensions(tiny_bundle):
    b = load_bundle(tiny_bundle)
    assert b.name == "tiny-qwen2_5_vl" and b.manifest.format_version == 2 and b.manifest.family == "qwen2_5_vl"
    assert {n: d.head for n, d in b.dimensions.items()} == {
        "visual_quality": "level_token", "text_alignment": "level_token", "quality_regression": "regression",
        "qa": "yes_no"}
    assert b.manifest.views["frames"].num_frames == 8 and b.family.grid == (4, 8, 8)
    assert set(b.manifest.heads) == {"quality_mlp"} and "heads/quality_mlp.safetensors" in b.manifest.checksums
    d = b.dimensions["text_alignment"]
    prefix, suffix = b.family.prompt_ids(d.render_question("a {weird} prompt"), d.answer_prefix)
    text = b.family.tokenizer._tok.decode(list(prefix) + list(suffix), skip_special_tokens=False)
    assert "a {weird} prompt" in text and text.endswith("The alignment of the video with the prompt is")


def test_a_version_1_bundle_is_refused_with_how_to_re_export(bundle_copy):
    m = bundle_copy / "manifest.json"
    m.write_text(json.dumps({"format_version": 1, "name": "old", "source": "/models/Qwen2.5-VL-7B"}))
    with pytest.raises(BundleError, match=r"version 1 .*predate model families.*vidjudge export hf "
                                          r"/models/Qwen2.5-VL-7B"):
        load_bundle(bundle_copy)


def test_unknown_family_and_missing_references_are_named(bundle_copy):
    m = bundle_copy / "manifest.json"
    doc = json.loads(m.read_text())
    m.write_text(json.dumps({**doc, "family": "gpt5_vision"}))
    with pytest.raises(BundleError, match="unknown model family 'gpt5_vision'.*qwen2_5_vl"):
        load_bundle(bundle_copy)
    m.write_text(json.dumps(doc))
    with open(bundle_copy / "dimensions.toml", "a") as f:
        f.write('\n[[dimension]]\nname = "lora_q"\nquestion = "q?"\nanswer_prefix = "It is"\nadapter = "nope"\n')
    with pytest.raises(BundleError, match="adapter 'nope'.*does not list"):
        load_bundle(bundle_copy)


def test_tampered_weights_are_refused(bundle_copy):
    w = bundle_copy / "llm" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch for llm/model.safetensors"):
        load_bundle(bundle_copy)


def test_missing_file_is_refused(bundle_copy):
    (bundle_copy / "encoder" / "vision.onnx").unlink()  # the qwen2_5_vl family's one encoder
    with pytest.raises(BundleError, match="encoder/vision.onnx listed in the manifest is missing"):
        load_bundle(bundle_copy)


def test_other_format_version_is_refused(bundle_copy):
    m = bundle_copy / "manifest.json"
    doc = json.loads(m.read_text())
    doc["format_version"] = 99
    m.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="format version 99.*re-export"):
        load_bundle(bundle_copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="manifest.json is missing"):
        load_bundle(tmp_path)


def test_user_added_dimension_is_served_without_code(bundle_copy):
    extra = ('\n[[dimension]]\nname = "motion_smoothness"\nquestion = "How smooth is the motion?"\n'
             'answer_prefix = "The motion is"\nlevels = ["good", "fair", "bad"]\nscale = [0, 10]\n')
    with open(bundle_copy / "dimensions.toml", "a") as f:
        f.write(extra)
    b = load_bundle(bundle_copy)  # dimensions.toml is not checksummed: users edit it
    d = b.dimensions["motion_smoothness"]
    assert d.levels == ("good", "fair", "bad") and (d.scale_min, d.scale_max) == (0.0, 10.0)
    bad = bundle_copy / "dimensions.toml"
    bad.write_text(bad.read_text().replace('levels = ["good", "fair", "bad"]', 'levels = ["good", "zzzqqq"]'))
    with pytest.raises(BundleError, match="zzzqqq'.*not a single token"):
        load_bundle(bundle_copy)
