"""Server-side commands of `vidjudge`: serve, demo (they need the `server` extra).

Only typer and rich are imported here; the server itself is imported when a command runs,
so `vidjudge --help` stays fast and works on a client-only install.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vidjudge.client.cli import DEFAULT_HOME, err, need_server_extra, out, print_results, setup_logging

app = typer.Typer(add_completion=False)


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
        need_server_extra(e)
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
    setup_logging(cfg.server.log_level)
    try:
        run_forever(cfg)
    except (ValueError, OSError) as e:
        err.print(f"[red]cannot serve: {e}[/red]")
        raise typer.Exit(2)


@app.command()
def demo(home: Path = typer.Option(DEFAULT_HOME / "demo", help="Where the default judge's bundle and sample videos go."),
         as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table.")):
    """Build the default judge's bundle (if missing), make a clean clip and degraded copies, serve on a free
    loopback port, score them, stop."""
    try:
        from vidjudge.server.demo import run_demo
    except ImportError as e:
        need_server_extra(e)
    setup_logging("WARNING")
    failures = run_demo(home, print_rows=lambda rows: print_results(rows, as_json), console=err)
    if failures:
        raise typer.Exit(1)
