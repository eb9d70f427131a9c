"""`vidjudge export ...`: build bundles (they need the `server` extra).

Only typer and rich are imported here; the exporters are imported when a command runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import typer

from vidjudge.client.cli import err, need_server_extra, out, setup_logging

app = typer.Typer(help="Build bundles (the directory a server loads a judge from).", no_args_is_help=True,
                  add_completion=False)


def _write(what: str, build: Callable[[], Path]) -> None:
    """Run an exporter and say where `what` went and how long it took; a refusal (ExportError, which names
    its cause) is printed in red and exits 2."""
    from vidjudge.export.hf import ExportError

    t = time.perf_counter()
    try:
        path = build()
    except ExportError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2)
    out.print(f"{what} written to {path} in {time.perf_counter() - t:.1f}s")


@app.command("tiny")
def export_tiny_cmd(out_dir: Path = typer.Argument(..., help="Bundle directory to create."),
                    seed: int = typer.Option(0, help="Weight seed (same seed, same bytes)."),
                    overwrite: bool = typer.Option(False, help="Replace OUT_DIR if it exists.")):
    """A tiny random-weight Qwen2.5-VL bundle, built offline in seconds (for demos and tests)."""
    try:
        from vidjudge.export.hf import export_tiny
    except ImportError as e:
        need_server_extra(e)
    setup_logging("WARNING")
    _write("tiny bundle", lambda: export_tiny(out_dir, seed=seed, overwrite=overwrite))


@app.command("hf")
def export_hf_cmd(checkpoint: Path = typer.Argument(..., help="Local Hugging Face Qwen2.5-VL checkpoint directory."),
                  out_dir: Path = typer.Argument(..., help="Bundle directory to create."),
                  frames: int = typer.Option(8, help="Frames sampled per video (one per equal segment)."),
                  height: int = typer.Option(448, help="Frame height after resize (multiple of 28)."),
                  width: int = typer.Option(448, help="Frame width after resize (multiple of 28)."),
                  name: Optional[str] = typer.Option(None, help="Model name (default: checkpoint folder name)."),
                  overwrite: bool = typer.Option(False, help="Replace OUT_DIR if it exists.")):
    """Convert a local Hugging Face checkpoint into a bundle (no network)."""
    try:
        from vidjudge.export.hf import export_hf
    except ImportError as e:
        need_server_extra(e)
    setup_logging("WARNING")
    _write("bundle", lambda: export_hf(checkpoint, out_dir, num_frames=frames, height=height, width=width,
                                       name=name, overwrite=overwrite))


@app.command("love")
def export_love_cmd(
        perception: Path = typer.Argument(..., help="LOVE-Perception folder as downloaded (config.json, safetensors, "
                                                    "lora_weights.pth, tokenizer)."),
        correspondence: Path = typer.Argument(..., help="LOVE-Correspondence folder."),
        qa: Path = typer.Argument(..., help="LOVE-QA folder."),
        temporal: Path = typer.Argument(..., help="temporal.pth from LOVE-pretrain (the Swin3D motion branch)."),
        out_dir: Path = typer.Argument(..., help="Bundle directory to create."),
        name: str = typer.Option("love", help="Model name the server lists."),
        fragment_offsets: str = typer.Option("middle", help="Crop offsets of the motion fragments: 'middle' (the "
                                                            "middle of the reference's random range) or 'seeded:N'."),
        check_tokenizer: bool = typer.Option(False, help="Also load each checkpoint's own tokenizer (runs its "
                                                         "tokenization code) and compare prompt token ids."),
        onnx: bool = typer.Option(True, help="Export the encoders to ONNX (off: torch encoder backend only)."),
        overwrite: bool = typer.Option(False, help="Replace OUT_DIR if it exists.")):
    """Convert the released LOVE checkpoints (three skills + temporal.pth) into one bundle (no network)."""
    try:
        from vidjudge.export.love import export_love
    except ImportError as e:
        need_server_extra(e)
    setup_logging("INFO")
    _write("LOVE bundle", lambda: export_love(perception, correspondence, qa, temporal, out_dir, name=name,
                                              overwrite=overwrite, fragment_offsets=fragment_offsets,
                                              check_tokenizer=check_tokenizer, onnx=onnx))


@app.command("love-tiny")
def export_love_tiny_cmd(out_dir: Path = typer.Argument(..., help="Folder for the three skill folders and "
                                                                 "temporal.pth."),
                         seed: int = typer.Option(0, help="Weight seed (same seed, same bytes).")):
    """Tiny random LOVE checkpoints in the released on-disk format (for tests and demos; offline)."""
    try:
        from vidjudge.export.love_tiny import build_love_checkpoints
    except ImportError as e:
        need_server_extra(e)
    for what, path in build_love_checkpoints(out_dir, seed=seed).items():
        out.print(f"{what}: {path}")


@app.command("trt")
def export_trt_cmd(bundle: Path = typer.Argument(..., help="Bundle directory (its encoder/*.onnx are compiled)."),
                   max_batch: int = typer.Option(32, help="Largest batch of videos the engine accepts."),
                   opt_batch: int = typer.Option(8, help="Batch size TensorRT tunes for."),
                   fp32: bool = typer.Option(False, help="Build in FP32 instead of FP16 (norms/softmax stay FP32)."),
                   workspace_gb: int = typer.Option(8, help="Builder workspace (GiB).")):
    """Build TensorRT engines for this GPU from the bundle's ONNX encoders (needs a GPU and the gpu extra)."""
    try:
        from vidjudge.export.trt import build_tensorrt_engine
    except ImportError as e:
        need_server_extra(e)
    setup_logging("INFO")
    try:
        records = build_tensorrt_engine(bundle, max_batch=max_batch, opt_batch=opt_batch, fp16=not fp32,
                                        workspace_gb=workspace_gb)
    except ImportError:
        err.print("[red]tensorrt is not installed: this command runs on a GPU machine with the gpu extra[/red]")
        raise typer.Exit(2)
    except Exception as e:  # noqa: BLE001 - builder errors are reported, not traced
        err.print(f"[red]TensorRT build failed: {e}[/red]")
        raise typer.Exit(1)
    for name, record in records.items():
        out.print(f"encoder {name}: engine {record['engine']} built for {record['gpu_name']} "
                  f"(sm_{record['compute_capability']}), TensorRT {record['tensorrt_version']}, "
                  f"batch 1..{record['max_batch']}")


@app.command("videobench")
def export_videobench_cmd(checkpoint: Path = typer.Argument(..., help="Local Hugging Face Qwen2.5-VL checkpoint "
                                                             "directory (the open model that judges)."),
                          out_dir: Path = typer.Argument(..., help="Bundle directory to create."),
                          height: int = typer.Option(448, help="Frame height after resize (multiple of 28)."),
                          width: int = typer.Option(448, help="Frame width after resize (multiple of 28)."),
                          max_frames: int = typer.Option(16, help="Most frames per video (2 per second are taken)."),
                          max_tokens: int = typer.Option(512, help="Longest answer of each chain step."),
                          name: Optional[str] = typer.Option(None, help="Model name."),
                          overwrite: bool = typer.Option(False, help="Replace OUT_DIR if it exists.")):
    """Video-Bench's nine dimensions (faithful chains and fast level-token modes) on an open Qwen2.5-VL."""
    try:
        from vidjudge.export.videobench import export_videobench
    except ImportError as e:
        need_server_extra(e)
    setup_logging("WARNING")
    _write("Video-Bench bundle", lambda: export_videobench(checkpoint, out_dir, height=height, width=width,
                                                           max_frames=max_frames, max_tokens=max_tokens, name=name,
                                                           overwrite=overwrite))


@app.command("videobench-tiny")
def export_videobench_tiny_cmd(out_dir: Path = typer.Argument(..., help="Bundle directory to create."),
                               overwrite: bool = typer.Option(False, help="Replace OUT_DIR if it exists.")):
    """Video-Bench on the tiny random Qwen2.5-VL (demos, tests, benchmarks), offline in seconds."""
    try:
        from vidjudge.export.videobench import export_videobench_tiny
    except ImportError as e:
        need_server_extra(e)
    setup_logging("WARNING")
    _write("tiny Video-Bench bundle", lambda: export_videobench_tiny(out_dir, overwrite=overwrite))


@app.command("default")
def export_default_cmd(out_dir: Path = typer.Argument(..., help="Bundle directory to create."),
                       overwrite: bool = typer.Option(False, help="Replace OUT_DIR if it exists.")):
    """The default judge's bundle from the weights shipped with vidjudge (checksum-verified; offline, seconds).

    A small Qwen2.5-VL trained on synthetic clips to rate blur, noise, blockiness, flicker, freeze and judder
    (visual_quality only); `vidjudge export train` rebuilds its weights from nothing."""
    try:
        from vidjudge.export.default_judge import export_default
    except ImportError as e:
        need_server_extra(e)
    setup_logging("WARNING")
    _write("default judge bundle", lambda: export_default(out_dir, overwrite=overwrite))


@app.command("train")
def export_train_cmd(out_dir: Path = typer.Argument(..., help="Checkpoint directory to write (like the shipped one)."),
                     workers: Optional[int] = typer.Option(None, help="Processes writing and decoding the clips "
                                                                      "(default: up to 4)."),
                     bundle: Optional[Path] = typer.Option(None, help="Also export the trained checkpoint as a "
                                                                      "bundle here.")):
    """Retrain the default judge from nothing (synthetic clips, seeded, one thread; ~16 min on 2 cores) and
    compare its files with the published checksums. Expect them to differ (x264 did not write the same
    bytes for every clip from run to run; export/train.py) and the held-out SRCC to match the shipped
    judge's 0.836; exit 1 when the files differ."""
    try:
        from vidjudge.export.default_judge import retrain
        from vidjudge.export.train import export_judge_bundle
    except ImportError as e:
        need_server_extra(e)
    setup_logging("WARNING")
    report, differ = retrain(out_dir, workers=workers, progress=lambda m: err.print(m, highlight=False))
    (out_dir / "training_report.json").write_text(report.to_json())
    out.print(f"trained in {report.train_s:.0f}s (+{report.data_s:.0f}s for the data); held-out SRCC "
              f"{report.heldout_srcc:.3f}, PLCC {report.heldout_plcc:.3f} on {report.heldout_size} clips; "
              f"report in {out_dir / 'training_report.json'}")
    if bundle is not None:
        out.print(f"bundle written to {export_judge_bundle(out_dir, bundle, overwrite=True)}")
    if differ:
        err.print(f"[red]not identical to the shipped judge: {', '.join(differ)} differ[/red] (the clips' bytes vary "
                  "between runs and builds; compare the held-out SRCC; the shipped weights stay the reference)")
        raise typer.Exit(1)
    out.print("bit-identical to the shipped judge (every file matches its published sha256)")


@app.command("synthetic")
def export_synthetic_cmd(out_dir: Path = typer.Argument(..., help="Directory for the clips, manifest.csv and "
                                                                  "labels.csv."),
                         contents: int = typer.Option(40, help="Content clips; each is written clean and with "
                                                              "4 degraded copies (severities 1-4)."),
                         split: str = typer.Option("heldout", help="heldout (content never trained on) or train."),
                         seed: int = typer.Option(0, help="Data seed (the default judge was trained with 0)."),
                         workers: Optional[int] = typer.Option(None, help="Processes writing clips.")):
    """Write synthetic clips with graded degradations, a rescore manifest and labels for `vidjudge eval`
    (labels: mos = 5 - severity on visual_quality)."""
    try:
        from vidjudge.export import synthetic
    except ImportError as e:
        need_server_extra(e)
    if split not in ("heldout", "train"):
        err.print("[red]--split is heldout or train[/red]")
        raise typer.Exit(2)
    t = time.perf_counter()
    specs = synthetic.make_specs(split, contents, seed)
    synthetic.write_clips(specs, out_dir, workers=workers or synthetic.default_workers())
    synthetic.write_manifest(specs, out_dir / "manifest.csv")
    synthetic.write_labels(specs, out_dir / "labels.csv")
    out.print(f"{len(specs)} clips, manifest.csv and labels.csv written to {out_dir} in {time.perf_counter() - t:.1f}s")
