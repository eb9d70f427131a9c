"""Read a rescore output dataset (a directory of Parquet parts) for analysis: one judge's rows."""

from __future__ import annotations

from pathlib import Path

COLUMNS = ["id", "dimension", "score", "status", "reason", "answer", "generator", "prompt", "path", "bundle",
           "bundle_sha256"]


class ResultsError(ValueError):
    """The results cannot be analysed as asked; the message says what to choose."""


def read_results(path: str | Path, bundle: str | None = None):
    """Rows of one judge as a pandas DataFrame (every status; callers keep the OK ones).

    `bundle` picks a judge by name or checksum prefix when DIR holds rows of several."""
    import pyarrow.dataset as pads

    p = Path(path)
    if not p.exists():
        raise ResultsError(f"no results at {p}")
    # Names starting with _ or . (ledger, lock, temporary parts) are skipped by pyarrow.dataset itself.
    df = pads.dataset(str(p), format="parquet").to_table(columns=COLUMNS).to_pandas()
    if df.empty:
        raise ResultsError(f"{p} holds no rows")
    judges = df.groupby("bundle_sha256")["bundle"].first()
    if bundle:
        keep = (df["bundle"] == bundle) | df["bundle_sha256"].str.startswith(bundle)
        df = df[keep]
        if df.empty:
            raise ResultsError(f"no rows of judge '{bundle}' in {p} (it holds: {_describe(judges)})")
    elif len(judges) > 1:
        raise ResultsError(f"{p} holds rows of {len(judges)} judges ({_describe(judges)}): choose one with --bundle")
    dup = df.duplicated(["id", "dimension"], keep=False)
    if dup.any():
        raise ResultsError(f"{int(dup.sum())} rows repeat an (id, dimension) in {p}: not a rescore output?")
    return df.reset_index(drop=True)


def _describe(judges) -> str:
    return ", ".join(f"{name} ({sha[:12]})" for sha, name in judges.items())
