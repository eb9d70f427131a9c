"""`vidjudge eval` and `vidjudge leaderboard` (registered on the `vidjudge` app in client/cli.py).

Only typer and rich are imported here; pandas, scipy and matplotlib when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[red]{message}[/red]")
    raise typer.Exit(2)


def _imports():
    try:
        import matplotlib  # noqa: F401
        import pandas  # noqa: F401
        import scipy  # noqa: F401
    except ImportError as e:
        _fail(f"this command needs the rescore extra ({e.name}): pip install 'vidjudge[rescore]'")


def eval_cmd(
    results: Path = typer.Argument(..., help="A `vidjudge rescore` output directory."),
    labels: Path = typer.Argument(..., help="Human labels: LOVE annotation JSON lines, a Video-Bench "
                                            "human_anno/<dim>.json (or the folder of them), or a CSV with id, "
                                            "dimension, mos."),
    out: Path = typer.Option(Path("eval-report"), "--out", "-o", help="Folder for report.md, metrics.json and "
                                                                      "the PNG plots."),
    labels_format: Optional[str] = typer.Option(None, "--labels-format", help="love, videobench or csv "
                                                "(default: from the name and content)."),
    dimension: Optional[str] = typer.Option(None, "--dimension", "-d", help="The results' dimension the labels "
                                            "are for (needed for LOVE files, which do not say; default: the file "
                                            "name)."),
    map_: List[str] = typer.Option(None, "--map", help="Rename a label dimension to the results' name: "
                                   "--map aesthetic_quality=visual_quality (repeatable)."),
    bundle: Optional[str] = typer.Option(None, "--bundle", help="Judge to evaluate (name or checksum prefix) "
                                         "when RESULTS holds several."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=100, help="Bootstrap resamples per interval."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed (same seed, same intervals)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
):
    """Agreement of a judge with human labels, per dimension: SRCC, PLCC, KRCC (instance and model level),
    QA accuracy, 95% bootstrap intervals; writes a Markdown report with scatter and ranking plots."""
    _imports()
    from vidjudge.client.analysis import plots
    from vidjudge.client.analysis.evaluate import evaluate, markdown
    from vidjudge.client.analysis.labels import LabelsError, read_labels
    from vidjudge.client.analysis.results import ResultsError, read_results

    try:
        res = read_results(results, bundle)
        lab = read_labels(labels, labels_format, dimension)
    except (ResultsError, LabelsError) as e:
        _fail(str(e))
    renames = {}
    for m in map_ or ():
        if "=" not in m:
            _fail(f"--map expects LABEL_DIMENSION=RESULT_DIMENSION, got {m!r}")
        a, b = m.split("=", 1)
        renames[a.strip()] = b.strip()
    lab["dimension"] = lab["dimension"].replace(renames)
    unknown = sorted(set(lab["dimension"]) - set(res["dimension"]))
    if unknown == sorted(set(lab["dimension"])):
        have = ", ".join(sorted(set(res["dimension"])))
        _fail(f"no label dimension ({', '.join(unknown)}) is in the results ({have}): use --dimension or "
              "--map LABEL=RESULT")
    reports = evaluate(res, lab, n_resamples=bootstrap, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, list[str]] = {}
    for r in reports:
        pngs[r.dimension] = [str(p) for p in (plots.scatter(r, out), plots.ranking(r, out)) if p is not None]
    judge = f"{res['bundle'].iloc[0]} ({res['bundle_sha256'].iloc[0][:12]})"
    (out / "report.md").write_text(markdown(reports, str(results), str(labels), judge, pngs) + "\n")
    metrics = {"judge": judge, "results": str(results), "labels": str(labels), "bootstrap": bootstrap, "seed": seed,
               "dimensions": [r.to_dict() for r in reports]}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if as_json:
        print(json.dumps(metrics))
        return
    con = Console()
    for r in reports:
        inst = ", ".join(f"{m.upper()} {r.instance[m]}" for m in r.instance) or "no scored pairs"
        con.print(f"[bold]{r.dimension}[/bold] ({r.matched} of {r.labels} labels matched): {inst}"
                  + (f"; QA accuracy {r.accuracy}" if r.accuracy else ""))
    con.print(f"report: {out / 'report.md'}")


def leaderboard_cmd(
    results: Path = typer.Argument(..., help="A `vidjudge rescore` output directory."),
    out: Path = typer.Option(Path("leaderboard"), "--out", "-o", help="Folder for leaderboard.md and "
                                                                      "leaderboard.csv."),
    bundle: Optional[str] = typer.Option(None, "--bundle", help="Judge to rank by (name or checksum prefix) "
                                         "when RESULTS holds several."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=100, help="Bootstrap resamples per interval."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON records on stdout."),
):
    """Per generator and dimension: mean score, 95% bootstrap interval and rank, as Markdown and CSV."""
    _imports()
    from vidjudge.client.analysis.leaderboard import leaderboard, markdown
    from vidjudge.client.analysis.results import ResultsError, read_results

    try:
        res = read_results(results, bundle)
    except ResultsError as e:
        _fail(str(e))
    df = leaderboard(res, n_resamples=bootstrap, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    judge = f"{res['bundle'].iloc[0]} ({res['bundle_sha256'].iloc[0][:12]})"
    df.to_csv(out / "leaderboard.csv", index=False)
    text = markdown(df, judge, str(results))
    (out / "leaderboard.md").write_text(text + "\n")
    if as_json:
        print(df.to_json(orient="records"))
    else:
        print(text)  # plain Markdown: a console would wrap its lines
