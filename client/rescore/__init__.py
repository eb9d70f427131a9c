"""Offline rescoring: `vidjudge rescore MANIFEST --out DIR` (needs the `rescore` extra).

One module per job; the driver (`run.py`) strings them together:

  manifest.py     read the manifest (CSV / JSON lines / Parquet, local or URI) into items
  sources.py      open a path or URI (pyarrow.fs, else fsspec) and read a video's bytes
  dedupe.py       content hashing and the dedupe of identical videos within a run
  rows.py         the output row schema and the one result -> row conversion
  dataset.py      the output dataset: part files renamed into place, the ledger, what is committed
  grpc_runner.py  scoring against running servers (spread, backoff on RESOURCE_EXHAUSTED)
  ray_runner.py   scoring on Ray Data (actors from vidjudge.server.offline)
  progress.py     the progress bar and the end-of-run summary
  run.py          the driver: plan, score, write, stop cleanly on SIGINT
  cli.py          the Typer command

Nothing here is imported by `vidjudge.client`; pyarrow, ray and server code are imported
only when a rescore runs, so the thin client stays thin.
"""
