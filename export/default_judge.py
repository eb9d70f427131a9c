"""The default judge: a small Qwen2.5-VL trained by export/train.py, shipped with the package.

Its checkpoint (weights, tokenizer, configs: ~2 MB) lives in `judge_checkpoint/` (package data). The
sha256 of every file is published here; `export_default` refuses a checkpoint that does not match,
and `retrain` rebuilds it from nothing (synthetic data, seeded training) and says whether the result
matches what ships (expect not: see export/train.py on the clips' bytes; the quality is the same).

What its scores mean: the severity of synthetic degradations (blur, noise, blockiness, flicker,
frame freeze, judder) on synthetic content (export/synthetic.py), on the `visual_quality` dimension
only. It has never seen a real or generated video: it proves the serving path computes what the
model learnt (normalisation, patch layout, resize, rotary positions), not what a real
video is worth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from vidjudge.export.hf import ExportError

CHECKPOINT = Path(__file__).with_name("judge_checkpoint")

# sha256 of each file export/train.py writes with TrainSettings() (seed 0), as trained on the
# project's CPU machines (torch 2.13.0 CPU, PyAV 18.1.0 with its bundled x264, numpy 2.3.5, Pillow 13.0.0; x86-64).
SHA256 = {
    "chat_template.jinja": "a0bc6f6fc7a29a80017a433e8f03a1cc1236e838a944a2d034295a60c4f2fddb",
    "config.json": "be6bc13f38821e083386a33c1a76f53653420c497a7bb6f82ce0fac6f5b68894",
    "generation_config.json": "f3a9b4cd2bcc4e5623eecc40dd64dfe9d2ff23ad504c01c1175c13b9d3a48424",
    "model.safetensors": "8eddcdf023949639994e67267a34e852864c00f34f8adb8bba6ed635868e65ee",
    "preprocessor_config.json": "0c4587d577157393ae4741e42d21329fdca8d4d72cb01a312879981704527182",
    "tokenizer.json": "7fed6ad5ee17b563e5076659abdd882861b516b69ce3703c3a07626971c135a9",
    "tokenizer_config.json": "158c8527ee28f77016e2d3b2e6930081e0193c6ffac9236d3bd5d5d7b1588781",
    "video_preprocessor_config.json": "e5411ea88e08a1b3223fc226bf5074d241c2971d192e0415331e2b931b2b2499",
}


class ChecksumError(ExportError):
    """The shipped checkpoint does not match its published checksums (an export refusal like any other)."""


def mismatches(checkpoint: Path, expected: dict[str, str] = SHA256) -> list[str]:
    """Files of `checkpoint` whose sha256 differs from the published one (or that are missing/extra)."""
    from vidjudge.server.bundle import sha256_file

    checkpoint = Path(checkpoint)
    present = {p.name for p in checkpoint.iterdir() if p.is_file()} if checkpoint.is_dir() else set()
    bad = present ^ set(expected)
    bad |= {name for name in present & set(expected) if sha256_file(checkpoint / name) != expected[name]}
    return sorted(bad)


def verify(checkpoint: Path = CHECKPOINT) -> Path:
    bad = mismatches(checkpoint)
    if bad:
        raise ChecksumError(f"{checkpoint}: {', '.join(bad)} differ from the published checksums of the default "
                            "judge (a damaged install, or a checkpoint from another training run)")
    return checkpoint


def export_default(out: Path, overwrite: bool = False) -> Path:
    """The default judge's bundle, from the shipped (checksum-verified) checkpoint; offline, seconds."""
    from vidjudge.export.train import export_judge_bundle

    return export_judge_bundle(verify(), out, overwrite=overwrite)


def retrain(out: Path, *, workers: int | None = None, progress: Callable[[str], None] = print):
    """Train the default judge again into `out` (a checkpoint directory, like the shipped one).

    Returns (TrainReport, files that differ from the published checksums: [] when bit-identical).
    """
    from vidjudge.export.train import TrainSettings, train

    report = train(Path(out), TrainSettings(), workers=workers, progress=progress)
    return report, mismatches(Path(out))
