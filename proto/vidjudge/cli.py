"""The `vidjudge` command, assembled from the commands of each part.

    client  (base install)      score, models                 vidjudge.client.cli
    offline (`rescore` extra)   rescore                       vidjudge.client.rescore.cli
            (`rescore` extra)   eval, leaderboard             vidjudge.client.analysis.cli
    server  (`server` extra)    serve, demo                   vidjudge.server.cli
    export  (`server` extra)    export tiny | hf | trt        vidjudge.export.cli

Each part's module imports only typer and rich at import time, so the client package
never pulls in server code and `vidjudge --help` works on a client-only install.
"""

from __future__ import annotations

import typer


def build_app() -> typer.Typer:
    from vidjudge.client import cli as client_cli
    from vidjudge.client.analysis.cli import eval_cmd, leaderboard_cmd
    from vidjudge.client.rescore.cli import rescore_cmd
    from vidjudge.export import cli as export_cli
    from vidjudge.server import cli as server_cli

    app = typer.Typer(help="vidjudge: judge videos with multimodal-LLM evaluators over gRPC.",
                      no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    for part in (server_cli.app, client_cli.app):
        for command in part.registered_commands:
            app.registered_commands.append(command)
    app.command("rescore")(rescore_cmd)
    app.command("eval")(eval_cmd)
    app.command("leaderboard")(leaderboard_cmd)
    app.add_typer(export_cli.app, name="export")
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
