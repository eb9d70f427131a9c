"""The default judge ships as checksummed weights, and its training step is reproducible bit for bit."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from vidjudge.export import default_judge
from vidjudge.export import train as T


def test_the_shipped_checkpoint_matches_its_published_checksums():
    assert default_judge.SHA256, "no published checksums"
    assert default_judge.mismatches(default_judge.CHECKPOINT) == []


def test_a_changed_checkpoint_is_refused_naming_the_file(tmp_path):
    ckpt = shutil.copytree(default_judge.CHECKPOINT, tmp_path / "ckpt")
    (ckpt / "config.json").write_text((ckpt / "config.json").read_text().replace("64", "65", 1))
    assert default_judge.mismatches(ckpt) == ["config.json"]
    (ckpt / "extra.bin").write_bytes(b"x")
    with pytest.raises(default_judge.ChecksumError, match="config.json, extra.bin"):
        default_judge.verify(ckpt)


@pytest.mark.slow
def test_training_on_the_same_clips_is_bit_identical(tmp_path):
    """The real recipe (view-level degradations drawn from the seed, flips, two learning rates, AdamW) on real
    written-and-decoded clips, twice from the same initial checkpoint."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    s = T.TrainSettings(steps=6, train_contents=2, heldout_contents=1, warmup_steps=2)
    init, batcher, clips, _ = T.prepare(s, tmp_path, 1, progress=lambda m: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        digests, losses = [], []
        for _ in range(2):
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(init, dtype=torch.float32)
            before = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
            losses.append(T.fit(model, batcher, clips, s, progress=lambda m: None))
            digests.append(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters()))
                           .hexdigest())
    finally:
        torch.set_num_threads(threads)
    assert digests[0] == digests[1] and losses[0] == losses[1]
    assert digests[0] != before  # it trained


def test_the_patch_filters_are_whitened_cosines():
    """The init that made the tower learn blur and noise (export/train.py): cosine basis images with gain
    1 + |frequency|, the frame-change ones 4x, the same for a given seed."""
    import torch

    shape = (64, 3, 2, 14, 14)
    w = T.frequency_filters(shape, 0)
    assert torch.equal(w, T.frequency_filters(shape, 0))
    norms = w.flatten(1).norm(dim=1)
    # Flat luma (frequency 0): gain 1; the finest (13, 13): 1 + 13 * sqrt(2); noise adds ~0.005 * sqrt(1176).
    assert norms[0].item() == pytest.approx(1.0, abs=0.3)
    assert norms[35].item() == pytest.approx(1 + 13 * 2 ** 0.5, rel=0.02)
    assert norms[36].item() == pytest.approx(4.0, rel=0.1)  # luma change between the frames, frequency 0
