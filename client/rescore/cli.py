"""`vidjudge rescore`: the Typer command (registered on the `vidjudge` app in client/cli.py).

Only typer and rich are imported here; pyarrow, Ray and the server are imported when the command runs.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

EXIT_OK, EXIT_LEFT, EXIT_SETUP, EXIT_INTERRUPTED = 0, 1, 2, 130


def rescore_cmd(
    manifest: str = typer.Argument(..., help="Manifest of videos: CSV, JSON lines or Parquet, a path or a URI. "
                                             "Columns: path (required), id (default: the path), prompt, generator, "
                                             "question and DIM.NAME inputs."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory: a Parquet dataset, one row per "
                                                      "(id, dimension). Rerun with the same DIR to resume."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", "-b", help="Score in this process with this bundle "
                                          "(the server's pipeline and batching, no gRPC). With --ray: the bundle "
                                          "path every Ray node loads."),
    server: List[str] = typer.Option(None, "--server", "-s", help="Score on a running server, host:port; "
                                     "repeat to spread the load over several (they must serve the same model)."),
    ray: bool = typer.Option(False, "--ray", help="Score on Ray Data actors with --bundle: on the cluster in "
                             "RAY_ADDRESS or --ray-address, else on a local Ray instance started for the run."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to use (implies --ray): "
                                              "'auto', HOST:6379, or ray://HOST:10001."),
    actors: Optional[int] = typer.Option(None, "--actors", min=1, help="Ray: pipeline actors (default: one per "
                                         "GPU, else one per --cpus-per-actor CPUs of the cluster)."),
    cpus_per_actor: float = typer.Option(4.0, "--cpus-per-actor", min=0.0, help="Ray: CPUs each actor reserves."),
    gpus_per_actor: float = typer.Option(0.0, "--gpus-per-actor", min=0.0, help="Ray: GPUs each actor reserves "
                                         "(0: one when the cluster has GPUs)."),
    ray_batch_size: int = typer.Option(16, "--ray-batch-size", min=1, help="Ray: videos per actor call, scored "
                                       "concurrently so the pipeline batches them."),
    dimension: List[str] = typer.Option(None, "--dimension", "-d", help="Dimension to score (repeatable); "
                                        "default: every dimension each video can be scored on."),
    model: str = typer.Option("", "--model", help="Model name (default: the bundle's, or the servers' default)."),
    concurrency: int = typer.Option(16, "--concurrency", "-c", min=1, help="Videos read or in the judge at once "
                                    "(--bundle, --server): enough for the batchers to fill."),
    part_rows: int = typer.Option(1000, "--part-rows", min=1, help="Commit a part file every N rows..."),
    part_seconds: float = typer.Option(60.0, "--part-seconds", min=0.01, help="...or every S seconds, whichever "
                                       "comes first: the most work a crash can cost."),
    max_video_mb: int = typer.Option(64, "--max-video-mb", min=1, help="Larger videos get a too_large row "
                                     "without being read."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.1, help="Deadline per video in seconds "
                                            "(default: none in-process, 600 over gRPC)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Manifest format if its name does not tell: csv, "
                                      "jsonl or parquet."),
    input_column: List[str] = typer.Option(None, "--input", help="Extra manifest column passed to the "
                                           "dimensions as an input (repeatable; `question` always is)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipeline TOML config (--bundle, --ray), as "
                                          "`vidjudge serve --config`."),
    set_: List[str] = typer.Option(None, "--set", help="Pipeline setting (--bundle, --ray): --set "
                                   "scorer.backend=transformers (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary table."),
):
    """Rescore a manifest of videos into a Parquet dataset, exactly once per (id, dimension).

    A restart with the same arguments skips what is committed; a killed run loses at most the part in
    progress. Ctrl-C finishes the current part and exits (130); a second Ctrl-C aborts. Exit 1 when
    some videos were left for the next run (servers full or away), 2 on a setup error.
    """
    err = Console(stderr=True)
    modes = [bool(server), bool(bundle) and not (ray or ray_address)]
    use_ray = ray or bool(ray_address)
    if use_ray and not bundle:
        _fail(err, "--ray needs --bundle: the bundle directory every Ray node loads")
    if server and bundle:
        _fail(err, "choose one place to score: --bundle DIR (in-process or with --ray) or --server ADDR")
    if not any(modes) and not use_ray:
        _fail(err, "say where to score: --bundle DIR, --server ADDR, or --bundle DIR --ray")
    try:
        from vidjudge.client.cli import setup_logging
        from vidjudge.client.rescore.progress import Reporter, print_summary
        from vidjudge.client.rescore.run import Run, RunOptions
    except ImportError as e:
        _fail(err, f"rescore needs the rescore extra ({e.name or e}): pip install 'vidjudge[rescore]'")
    setup_logging("WARNING")
    opts = RunOptions(manifest=manifest, out=out, fmt=fmt, dimensions=tuple(dict.fromkeys(dimension or ())),
                      concurrency=concurrency, part_rows=part_rows, part_seconds=part_seconds,
                      max_video_mb=max_video_mb, plain_inputs=("question", *(input_column or ())),
                      argv=sys.argv[1:])
    mode = "ray" if use_ray else "server" if server else "bundle"
    reporter = Reporter(err, enabled=not (as_json or quiet))
    run = Run(opts, mode, reporter)
    try:
        summary = _execute(run, err, mode=mode, bundle=bundle, servers=list(server or ()), model=model,
                           timeout=timeout, config=config, sets=list(set_ or ()), ray_address=ray_address,
                           actors=actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                           ray_batch_size=ray_batch_size)
    finally:
        reporter.stop()
    if as_json:
        print(json.dumps(summary.to_dict()))
    elif not quiet:
        print_summary(summary, Console())
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.left_for_next_run:
        raise typer.Exit(EXIT_LEFT)


def _fail(err: Console, message: str) -> None:
    err.print(f"[red]{message}[/red]")
    raise typer.Exit(EXIT_SETUP)


def _execute(run, err: Console, *, mode: str, bundle, servers, model, timeout, config, sets, ray_address,
             actors, cpus_per_actor, gpus_per_actor, ray_batch_size):
    """Open DIR, plan, score; setup errors (bad manifest, busy DIR, unreachable server) exit 2."""
    from vidjudge.client.rescore.dataset import DatasetError
    from vidjudge.client.rescore.manifest import ManifestError
    from vidjudge.errors import VidjudgeError

    try:
        run.open()
    except DatasetError as e:
        _fail(err, str(e))
    try:
        if mode == "ray":
            return _ray(run, bundle=bundle, model=model, timeout=timeout, config=config, sets=sets,
                        address=ray_address, actors=actors, cpus=cpus_per_actor, gpus=gpus_per_actor,
                        batch_size=ray_batch_size)
        return asyncio.run(_local(run, mode=mode, bundle=bundle, servers=servers, model=model, timeout=timeout,
                                  config=config, sets=sets))
    except (ManifestError, VidjudgeError, ValueError, OSError) as e:
        run.out.close()
        _fail(err, f"cannot rescore: {e}")
    except KeyboardInterrupt:
        # The second Ctrl-C: nothing more is committed; the part in progress is redone next run.
        run.out.close()
        err.print("[yellow]aborted: rows not yet committed will be scored by the next run[/yellow]")
        raise typer.Exit(EXIT_INTERRUPTED)


def _pipeline_config(bundle: Path, config: Path | None, sets: list[str], concurrency: int):
    from vidjudge.server.offline import rescore_config

    return rescore_config(bundle, sets, config_file=config, concurrency=concurrency)


async def _local(run, *, mode, bundle, servers, model, timeout, config, sets):
    from vidjudge.client.rescore.manifest import read_manifest
    from vidjudge.client.rescore.run import drive

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    _on_sigint(lambda: loop.call_soon_threadsafe(stop.set), run)
    table = read_manifest(run.opts.manifest, run.opts.fmt, run.opts.plain_inputs)
    scorer = None
    try:
        if mode == "server":
            from vidjudge.client.rescore.grpc_runner import GrpcScorer

            scorer = GrpcScorer(servers, model=model, timeout=timeout or 600.0)
            judge = await scorer.start()
        else:
            from vidjudge.server.offline import bundle_judge_info

            judge = bundle_judge_info(bundle)
        items = run.plan(table, judge)
        if items:
            if scorer is None:
                from vidjudge.server.offline import InProcessScorer

                cfg = _pipeline_config(bundle, config, sets, run.opts.concurrency)
                # Built on this loop, as the server builds its pipeline: a vLLM engine binds to the loop
                # it starts on (built elsewhere it would need a loop thread of its own).
                scorer = InProcessScorer(cfg, model, timeout)
            run.start_scoring()
            await drive(run, items, scorer, stop, run.opts.concurrency)
    finally:
        if scorer is not None:
            run.summary.retries = getattr(scorer, "rejections", 0)
            await scorer.aclose()
    return run.close(interrupted=stop.is_set())


def _ray(run, *, bundle, model, timeout, config, sets, address, actors, cpus, gpus, batch_size):
    from vidjudge.client.rescore.ray_runner import RayOptions, init_ray, read_manifest_ray, score_on_ray
    from vidjudge.server.offline import bundle_judge_info, flat_config

    stop = threading.Event()
    _on_sigint(stop.set, run)
    cfg = _pipeline_config(bundle, config, sets, batch_size)
    opts = RayOptions(address=address, bundle=str(Path(bundle).resolve()), overrides=flat_config(cfg), model=model,
                      actors=actors, cpus_per_actor=cpus, gpus_per_actor=gpus, batch_size=batch_size,
                      timeout=timeout)
    started = init_ray(opts)
    try:
        table = read_manifest_ray(run.opts.manifest, run.opts.fmt, run.opts.plain_inputs)
        items = run.plan(table, bundle_judge_info(bundle))
        run.start_scoring("rescoring on Ray")
        score_on_ray(run, items, opts, stop)
    finally:
        if started:
            import ray

            ray.shutdown()
    return run.close(interrupted=stop.is_set())


def _on_sigint(stop, run) -> None:
    """First Ctrl-C: start no new video, finish the part, exit. A second one: the default (abort)."""

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        run.reporter.describe("finishing the current part (Ctrl-C again to abort)")
        stop()

    signal.signal(signal.SIGINT, handler)
