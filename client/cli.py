"""Client-side commands of `vidjudge` (score, models) and the console helpers every command shares.

These work on the base install. The whole command is assembled in `vidjudge.cli`, which adds
the server-side commands (serve, demo: vidjudge.server.cli; export: vidjudge.export.cli).
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

app = typer.Typer(add_completion=False)
out = Console()
err = Console(stderr=True)
DEFAULT_HOME = Path.home() / ".cache" / "vidjudge"


def need_server_extra(e: ImportError) -> None:
    err.print(f"[red]this command needs the server extra[/red] ({e.name or e}): "
              "pip install torch==2.13.0 && pip install 'vidjudge[server]'")
    raise typer.Exit(2)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Library chatter (weight-loading progress bars, exporter notes) is not ours to print.
    for noisy in ("torch.onnx", "onnxscript", "transformers"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # The ONNX exporter warns about every torchvision op it cannot register when torchvision is absent
    # (the demo's venv): nothing vidjudge exports uses them.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def _cell(s) -> str:
    """One dimension's table cell: the score and what backs it (top level, yes/no answer), or its error."""
    if s is None:
        return "-"
    if s.error is not None:
        return f"[red]{s.error.reason}[/red]"
    if s.answer:
        return f"{s.answer} ({s.answer_probability:.2f})"
    top = max(s.levels, key=s.levels.get) if s.levels else ""
    return f"{s.score:.3f} {top}".rstrip()


def print_results(rows: list[tuple[str, object]], as_json: bool) -> int:
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
        cells = [_cell(r.scores.get(d)) for d in dims]
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
          input_: List[str] = typer.Option(None, "--input", "-i", metavar="DIMENSION.FIELD=VALUE",
                                           help="Per-dimension input, e.g. -i qa.question='Is there a dog?' "
                                                "(repeatable; `vidjudge models` lists what each dimension takes)."),
          server_path: bool = typer.Option(False, help="Send paths for the server to read (inside its "
                                                        "allowed dirs) instead of the bytes."),
          concurrency: int = typer.Option(8, help="Requests in flight at once (one ScoreStream)."),
          timeout: float = typer.Option(600.0, help="Deadline for the whole run, seconds."),
          as_json: bool = typer.Option(False, "--json", help="One JSON object per line (for machines).")):
    """Score video files on a running server. Exits 1 if any file failed (each failure is named)."""
    from vidjudge.client import JudgeClient, build_request

    inputs: dict[str, dict[str, str]] = {}
    for item in input_ or []:
        key, sep, value = item.partition("=")
        dim, dot, field = key.rpartition(".")
        if not (sep and dot and dim and field):
            err.print(f"[red]--input expects DIMENSION.FIELD=VALUE, got {item!r}[/red]")
            raise typer.Exit(2)
        inputs.setdefault(dim, {})[field] = value
    rows: dict[str, object] = {}
    reqs = []
    for i, f in enumerate(files):
        try:
            reqs.append((str(i), build_request(f, prompt=prompt, dimensions=dimension or (), model=model,
                                               server_path=server_path, inputs=inputs)))
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
    failures = print_results([(str(files[int(k)]), rows[k]) for k in sorted(rows, key=int)], as_json)
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
        views = "; ".join(f"{v.name}: {v.num_frames} frames" + (f" of {v.width}x{v.height}" if v.width else "")
                          + f" ({v.strategy})" for v in m.views)
        encoders = ", ".join(f"{n}: {b}" for n, b in m.encoder_backends.items()) or m.encoder_backend
        out.print(f"[bold]{m.name}[/bold]{' (default)' if m.is_default else ''}: {m.family}; views {views}; "
                  f"encoders {encoders}; LLM {m.scorer_backend}"
                  + (f"; adapters {', '.join(m.adapters)}" if m.adapters else ""))
        for d in m.dimensions:
            needs = (["prompt"] if d.requires_prompt else []) + [f"input {d.name}.{i}" for i in d.inputs]
            out.print(f"  {d.name} [{d.scale_min:g}-{d.scale_max:g}] {d.head}"
                      + (f" {'/'.join(d.levels)}" if d.levels else "")
                      + (f" adapter {d.adapter}" if d.adapter else "")
                      + (f" (needs {', '.join(needs)})" if needs else "") + f": {d.description}")


@app.command()
def suite(suite_json: Path = typer.Argument(..., help="Prompt suite in Video-Bench's layout: a JSON list of "
                                            '{"prompt", "dimension": \\[tags]} (its VideoBench_full.json).'),
          videos: Path = typer.Argument(..., help="Videos as <VIDEOS>/<generator>/<prompt>_<seed>.mp4."),
          out_dir: Path = typer.Option(..., "--out", "-o", help="Where the results JSON files and leaderboard go."),
          server: Optional[str] = typer.Option(None, "--server", "-s", help="A running server (host:port)."),
          bundle: Optional[Path] = typer.Option(None, "--bundle", help="Or a Video-Bench bundle served here, on a "
                                                "loopback port, for this run (needs the server extra)."),
          mode: str = typer.Option("faithful", help="faithful (Video-Bench's chains and group calls) or fast "
                                   "(the same rubrics, one level-token forward each)."),
          seeds: str = typer.Option("0,1,2", help="Seeds to look for (<prompt>_<seed>.mp4)."),
          dimension: List[str] = typer.Option(None, "--dimension", "-d", help="Only these dimensions (repeatable)."),
          concurrency: int = typer.Option(4, help="Prompt groups in flight at once."),
          model: str = typer.Option("", help="Model name on the server; default: its default.")):
    """Score a prompt suite per generator and dimension (Video-Bench's layouts in and out) with group scoring."""
    import asyncio
    import contextlib

    from vidjudge.client.suite import plan, score_all, write_outputs

    if mode not in ("faithful", "fast"):
        err.print("[red]--mode is faithful or fast[/red]")
        raise typer.Exit(2)
    if bool(server) == bool(bundle):
        err.print("[red]say where to score: --server ADDR or --bundle DIR[/red]")
        raise typer.Exit(2)
    try:
        groups = plan(json.loads(suite_json.read_text()), videos, tuple(int(s) for s in seeds.split(",") if s),
                      tuple(dimension or ()))
    except (OSError, ValueError, KeyError) as e:
        err.print(f"[red]cannot read the suite: {e}[/red]")
        raise typer.Exit(2)
    with contextlib.ExitStack() as stack:
        target = server
        if bundle is not None:
            try:
                from vidjudge.server.app import ServerThread
                from vidjudge.server.config import load_config
            except ImportError as e:
                need_server_extra(e)
            setup_logging("WARNING")
            cfg = load_config(overrides={"server.port": 0, "server.bundles": [str(bundle)]})
            target = stack.enter_context(ServerThread(cfg)).address
        from rich.progress import Progress

        with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
            task = progress.add_task(f"{len(groups)} prompt groups ({mode})", total=len(groups))
            results = asyncio.run(score_all(target, groups, fast=mode == "fast", concurrency=concurrency,
                                            model=model, progress=lambda: progress.advance(task)))
    rows = write_outputs(out_dir, results)
    table = Table(title=f"{mode} scores, mean per generator ({len(groups)} prompt groups)")
    dims = sorted(results)
    table.add_column("generator")
    for d in dims:
        table.add_column(d, justify="right")
    for r in rows:
        table.add_row(r["generator"], *("-" if r[d] is None else f"{r[d]:.2f}" for d in dims))
    out.print(table)
    out.print(f"results written to {out_dir}")
