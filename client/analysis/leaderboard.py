"""`vidjudge leaderboard`: per generator and dimension, the mean score, its 95% interval and the rank.

Rank 1 is the highest mean within a dimension; equal means share the better rank (scipy rankdata
"min"). Only rows scored OK count; rows without a generator are grouped as "(none)".
"""

from __future__ import annotations

from vidjudge.client.analysis import stats

COLUMNS = ["dimension", "rank", "generator", "n", "mean", "ci_low", "ci_high"]


def leaderboard(results, n_resamples: int = 1000, seed: int = 0):
    import pandas as pd
    from scipy.stats import rankdata

    ok = results[results["status"] == "OK"].dropna(subset=["score"])
    ok = ok.assign(generator=ok["generator"].fillna("(none)"))
    rows = []
    for dim, by_dim in ok.groupby("dimension", sort=True):
        est = {g: stats.mean(grp["score"], n_resamples, seed) for g, grp in by_dim.groupby("generator")}
        names = list(est)
        ranks = rankdata([-est[g].value for g in names], method="min")
        for g, r in zip(names, ranks):
            e = est[g]
            rows.append({"dimension": dim, "rank": int(r), "generator": g, "n": e.n, "mean": e.value,
                         "ci_low": e.low, "ci_high": e.high})
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["dimension", "rank", "generator"]).reset_index(drop=True)


def markdown(df, judge: str, results_path: str) -> str:
    lines = [f"# vidjudge leaderboard: {judge}", "", f"Results `{results_path}`: mean score per generator and "
             "dimension, 95% bootstrap interval, rank 1 = highest mean.", ""]
    for dim, grp in df.groupby("dimension", sort=True):
        lines += [f"## {dim}", "", "| rank | generator | n | mean | 95% CI |", "| ---: | --- | ---: | ---: | --- |"]
        for r in grp.itertuples():
            ci = "-" if r.ci_low != r.ci_low else f"[{r.ci_low:.4f}, {r.ci_high:.4f}]"
            lines.append(f"| {r.rank} | {r.generator} | {r.n} | {r.mean:.4f} | {ci} |")
        lines.append("")
    return "\n".join(lines)
