"""The `vidjudge` command: serve, export, score, models, demo.

Server-side commands (serve, export, demo) need the `server` extra; the
client-side ones (score, models) work on the base install.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from vidjudge.errors import VidjudgeError

app = typer.Typer(help="vidjudge: judge videos with multimodal-LLM evaluators over gRPC.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
export_app = typer.Typer(help="Build bundles (the directory a server loads a judge from).", no_args_is_help=True)
app.add_typer(export_app, name="export")
out = Console()
err = Console(stderr=True)
DEFAULT_HOME = Path.home() / ".cache" / "vidjudge"


def _need_server_extra(e: ImportError) -> None:
    err.print(f"[red]this command needs the server extra[/red] ({e.name or e}): "
              "pip install torch==2.13.0 && pip install 'vidjudge[server]'")
    raise typer.Exit(2)


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Library chatter (weight-loading progress bars, exporter notes) is not ours to print.
    for noisy in ("torch.onnx", "onnxscript", "transformers"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


@app.command()
def serve(
    bundles: List[Path] = typer.Argument(None, help="Bundle directories (the first is the default model). "
                                                     "Adds to server.bundles from the config."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config file (see --help-config)."),
    host: Optional[str] = typer.Option(None, help="Listen address (server.host)."),
    port: Optional[int] = typer.Option(None, help="gRPC port (server.port); 0 picks a free one."),
    metrics_port: Optional[int] = typer.Option(None, help="Prometheus port (server.metrics_port); 0 = off."),
    allow_dir: List[Path] = typer.Option(None, "--allow-dir", help="Directory requests may name video paths in "
                                                                    "(limits.allowed_dirs); repeatable."),
    set_: List[str] = typer.Option(None, "--set", help="Override any field: --set decode.workers=4 (repeatable)."),
    help_config: bool = typer.Option(False, "--help-config", help="Print every config field with its default."),
):
    """Serve bundles over gRPC (health, reflection, Prometheus metrics; SIGTERM drains)."""
    try:
        from vidjudge.server.app import run_forever
        from vidjudge.server.config import ConfigError, describe, load_config
    except ImportError as e:
        _need_server_extra(e)
    if help_config:
        out.print(describe(), markup=False, highlight=False)
        return
    overrides = list(set_ or [])
    try:
        cfg = load_config(config, overrides=overrides)
    except ConfigError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2)
    if bundles:
        cfg.server.bundles = [*cfg.server.bundles, *bundles]
    for name, value in (("host", host), ("port", port), ("metrics_port", metrics_port)):
        if value is not None:
            setattr(cfg.server, name, value)
    if allow_dir:
        cfg.limits.allowed_dirs = [*cfg.limits.allowed_dirs, *allow_dir]
    _logging(cfg.server.log_level)
    try:
        run_forever(cfg)
    except (ValueError, OSError) as e:
        err.print(f"[red]cannot serve: {e}[/red]")
        raise typer.Exit(2)


@export_app.command("tiny")
def export_tiny_cmd(out_dir: Path = typer.Argument(..., help="Bundle directory to create."),
                    seed: int = typer.Option(0, help="Weight seed (same seed, same bytes)."),
                    overwrite: bool = typer.Option(False, help="Replace OUT_DIR if it exists.")):
    """A tiny random-weight Qwen2.5-VL bundle, built offline in seconds (for demos and tests)."""
    try:
        from vidjudge.export.hf import ExportError, export_tiny
    except ImportError as e:
        _need_server_extra(e)
    _logging("WARNING")
    t = time.perf_counter()
    try:
        path = export_tiny(out_dir, seed=seed, overwrite=overwrite)
    except ExportError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2)
    out.print(f"tiny bundle written to {path} in {time.perf_counter() - t:.1f}s")


@export_app.command("hf")
def export_hf_cmd(checkpoint: Path = typer.Argument(..., help="Local Hugging Face Qwen2.5-VL checkpoint directory."),
                  out_dir: Path = typer.Argument(..., help="Bundle directory to create."),
                  frames: int = typer.Option(8, help="Frames sampled per video (one per equal segment)."),
                  height: int = typer.Option(448, help="Frame height after resize (multiple of 28)."),
                  width: int = typer.Option(448, help="Frame width after resize (multiple of 28)."),
                  name: Optional[str] = typer.Option(None, help="Model name (default: checkpoint folder name)."),
                  overwrite: bool = typer.Option(False, help="Replace OUT_DIR if it exists.")):
    """Convert a local Hugging Face checkpoint into a bundle (no network)."""
    try:
        from vidjudge.export.hf import ExportError, export_hf
    except ImportError as e:
        _need_server_extra(e)
    _logging("WARNING")
    try:
        path = export_hf(checkpoint, out_dir, num_frames=frames, height=height, width=width, name=name,
                         overwrite=overwrite)
    except ExportError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2)
    out.print(f"bundle written to {path}")


@export_app.command("trt")
def export_trt_cmd(bundle: Path = typer.Argument(..., help="Bundle directory (its encoder/vision.onnx is compiled)."),
                   max_batch: int = typer.Option(32, help="Largest batch of videos the engine accepts."),
                   opt_batch: int = typer.Option(8, help="Batch size TensorRT tunes for."),
                   fp32: bool = typer.Option(False, help="Build in FP32 instead of FP16 (norms/softmax stay FP32)."),
                   workspace_gb: int = typer.Option(8, help="Builder workspace (GiB).")):
    """Build a TensorRT engine for this GPU from the bundle's ONNX encoder (needs a GPU and the gpu extra)."""
    try:
        from vidjudge.export.trt import build_tensorrt_engine
    except ImportError as e:
        _need_server_extra(e)
    _logging("INFO")
    try:
        record = build_tensorrt_engine(bundle, max_batch=max_batch, opt_batch=opt_batch, fp16=not fp32,
                                       workspace_gb=workspace_gb)
    except ImportError:
        err.print("[red]tensorrt is not installed: this command runs on a GPU machine with the gpu extra[/red]")
        raise typer.Exit(2)
    except Exception as e:  # noqa: BLE001 - builder errors are reported, not traced
        err.print(f"[red]TensorRT build failed: {e}[/red]")
        raise typer.Exit(1)
    out.print(f"engine {record['engine']} built for {record['gpu_name']} (sm_{record['compute_capability']}), "
              f"TensorRT {record['tensorrt_version']}, batch 1..{record['max_batch']}")


def _print_results(rows: list[tuple[str, object]], as_json: bool) -> int:
    """rows: (name, ScoreResult | VidjudgeError). Returns the number of failures."""
    failures = 0
    if as_json:
        for name, r in rows:
            if isinstance(r, VidjudgeError):
                failures += 1
                print(json.dumps({"file": name, "error": {"code": r.code.name, "reason": r.reason,
                                                          "message": r.message}}))
            else:
                print(json.dumps({"file": name, **r.to_dict()}))
        return failures
    dims = sorted({d for _, r in rows if not isinstance(r, VidjudgeError) for d in r.scores})
    table = Table()
    table.add_column("video", overflow="fold")
    for d in dims:
        table.add_column(d, justify="right")
    table.add_column("ms", justify="right")
    any_failed = any(isinstance(r, VidjudgeError) for _, r in rows)
    if any_failed:
        table.add_column("error", overflow="fold")
    for name, r in rows:
        if isinstance(r, VidjudgeError):
            failures += 1
            table.add_row(name, *[""] * (len(dims) + 1), f"[red]{r.code.name} ({r.reason}): {r.message}[/red]")
            continue
        cells = []
        for d in dims:
            s = r.scores.get(d)
            top = max(s.levels, key=s.levels.get) if s and s.levels else ""
            cells.append(f"{s.score:.3f} {top}" if s else "-")
        table.add_row(name, *cells, f"{r.timings['total_s'] * 1000:.0f}", *([""] if any_failed else []))
    out.print(table)
    return failures


@app.command()
def score(files: List[Path] = typer.Argument(..., help="Video files to score."),
          server: str = typer.Option("127.0.0.1:50051", "--server", "-s", help="Server address host:port."),
          prompt: str = typer.Option("", help="Generation prompt (needed by text_alignment)."),
          dimension: List[str] = typer.Option(None, "--dimension", "-d",
                                              help="Dimension to score (repeatable); default: all that apply."),
          model: str = typer.Option("", help="Model name; default: the server's default."),
          server_path: bool = typer.Option(False, help="Send paths for the server to read (inside its "
                                                        "allowed dirs) instead of the bytes."),
          concurrency: int = typer.Option(8, help="Requests in flight at once (one ScoreStream)."),
          timeout: float = typer.Option(600.0, help="Deadline for the whole run, seconds."),
          as_json: bool = typer.Option(False, "--json", help="One JSON object per line (for machines).")):
    """Score video files on a running server. Exits 1 if any file failed (each failure is named)."""
    from vidjudge.client import JudgeClient, build_request

    rows: dict[str, object] = {}
    reqs = []
    for i, f in enumerate(files):
        try:
            reqs.append((str(i), build_request(f, prompt=prompt, dimensions=dimension or (), model=model,
                                               server_path=server_path)))
        except OSError as e:
            rows[str(i)] = VidjudgeError(f"cannot read {f}: {e.strerror}", reason="file_not_found")
    show_progress = not as_json and out.is_terminal and len(reqs) > 1
    try:
        with JudgeClient(server, timeout=timeout) as c:
            if show_progress:
                from rich.progress import Progress
                with Progress(console=err, transient=True) as progress:
                    task = progress.add_task("scoring", total=len(reqs))
                    for item in c.score_stream(reqs, window=concurrency):
                        rows[item.id] = item.result if item.ok else item.error
                        progress.advance(task)
            else:
                for item in c.score_stream(reqs, window=concurrency):
                    rows[item.id] = item.result if item.ok else item.error
    except VidjudgeError as e:
        err.print(f"[red]cannot score on {server}: {e}[/red]")
        raise typer.Exit(2)
    failures = _print_results([(str(files[int(k)]), rows[k]) for k in sorted(rows, key=int)], as_json)
    if failures:
        err.print(f"{failures} of {len(files)} file(s) failed")
        raise typer.Exit(1)


@app.command()
def models(server: str = typer.Option("127.0.0.1:50051", "--server", "-s", help="Server address host:port."),
           as_json: bool = typer.Option(False, "--json", help="JSON output.")):
    """List the server's models and their dimensions."""
    from dataclasses import asdict

    from vidjudge.client import JudgeClient

    try:
        with JudgeClient(server, timeout=10) as c:
            ms = c.list_models()
    except VidjudgeError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2)
    if as_json:
        print(json.dumps([asdict(m) for m in ms], indent=2))
        return
    for m in ms:
        out.print(f"[bold]{m.name}[/bold]{' (default)' if m.is_default else ''}: {m.family}, {m.num_frames} frames "
                  f"of {m.width}x{m.height}, encoder {m.encoder_backend}, scorer {m.scorer_backend}")
        for d in m.dimensions:
            out.print(f"  {d.name} [{d.scale_min:g}-{d.scale_max:g}] levels {'/'.join(d.levels)}"
                      f"{' (needs prompt)' if d.requires_prompt else ''}: {d.description}")


@app.command()
def demo(home: Path = typer.Option(DEFAULT_HOME / "demo", help="Where the tiny bundle and sample videos go."),
         as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table.")):
    """Build the tiny bundle (if missing), make sample videos, serve on a free loopback port, score, stop."""
    try:
        from vidjudge.client.demo import run_demo
    except ImportError as e:
        _need_server_extra(e)
    _logging("WARNING")
    failures = run_demo(home, print_rows=lambda rows: _print_results(rows, as_json), console=err)
    if failures:
        raise typer.Exit(1)


# Offline rescoring and analysis (the `rescore` extra); the modules import only typer and rich at load.
from vidjudge.client.analysis.cli import eval_cmd, leaderboard_cmd  # noqa: E402
from vidjudge.client.rescore.cli import rescore_cmd  # noqa: E402

app.command("rescore")(rescore_cmd)
app.command("eval")(eval_cmd)
app.command("leaderboard")(leaderboard_cmd)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
