"""`vidjudge eval`: join a judge's results with human labels and measure the agreement.

Per dimension:
- instance level: SRCC, PLCC, KRCC of the judge's scores against the labels' MOS;
- model level: the same over generators, each one's mean score against its mean MOS (LOVE's paper
  reports both; the interval resamples generators);
- QA accuracy where the labels carry yes/no answers and the results an `answer`;
each with its 95% bootstrap interval (stats.py).

Matching a label to a result: the label's key equals the result's id, or is a path suffix (whole
folder names) of exactly one result's id or path, e.g. Video-Bench's `color/kling/A red bicycle_0.mp4`
finds the row whose path ends in it. Rows that failed (status != OK) are left out and counted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from vidjudge.client.analysis import stats
from vidjudge.client.analysis.labels import yes_no


@dataclass
class DimensionReport:
    dimension: str
    labels: int = 0
    matched: int = 0
    failed: int = 0  # matched rows whose status was not OK (left out)
    instance: dict = field(default_factory=dict)  # metric -> Estimate
    model: dict = field(default_factory=dict)  # metric -> Estimate (over generators)
    generators: list = field(default_factory=list)  # [{generator, n, pred: Estimate, human: Estimate}]
    accuracy: stats.Estimate | None = None
    pairs: object = None  # the joined DataFrame (for plots)

    def to_dict(self) -> dict:
        return {"dimension": self.dimension, "labels": self.labels, "matched": self.matched, "failed": self.failed,
                "instance": {k: v.to_dict() for k, v in self.instance.items()},
                "model": {k: v.to_dict() for k, v in self.model.items()},
                "generators": [{"generator": g["generator"], "n": g["n"], "pred": g["pred"].to_dict(),
                                "human": g["human"].to_dict()} for g in self.generators],
                "qa_accuracy": self.accuracy.to_dict() if self.accuracy else None}


def _parts(path: str) -> list[str]:
    return [p for p in str(path).replace("\\", "/").split("/") if p and p != "."]


def _suffixes(path: str) -> list[str]:
    parts = _parts(path)
    return ["/".join(parts[i:]) for i in range(len(parts))]


def match(results, labels) -> dict[str, str]:
    """label key -> result id, for keys that name exactly one result video."""
    ids = set(results["id"])
    index: dict[str, set] = defaultdict(set)
    for vid, path in zip(results["id"], results["path"]):
        for s in {*_suffixes(vid), *(_suffixes(path) if isinstance(path, str) else [])}:
            index[s].add(vid)
    out = {}
    for key in set(labels["key"]):
        if key in ids:
            out[key] = key
            continue
        hits = index.get("/".join(_parts(key)), set())
        if len(hits) == 1:  # an ambiguous suffix (two videos named alike) matches nothing
            out[key] = next(iter(hits))
    return out


def evaluate(results, labels, n_resamples: int = 1000, seed: int = 0) -> list[DimensionReport]:
    import pandas as pd

    keys = match(results, labels)
    labels = labels.assign(id=labels["key"].map(keys))
    reports = []
    for dim, lab in labels.groupby("dimension", sort=True):
        rep = DimensionReport(dimension=dim, labels=len(lab))
        res = results[results["dimension"] == dim]
        joined = lab.dropna(subset=["id"]).merge(res, on="id", how="inner", suffixes=("_label", ""))
        rep.matched = len(joined)
        ok = joined[joined["status"] == "OK"]
        rep.failed = rep.matched - len(ok)
        scored = ok.dropna(subset=["mos", "score"])
        if len(scored):
            for m in stats.METRICS:
                rep.instance[m] = stats.correlation(m, scored["score"], scored["mos"], n_resamples, seed)
            gen = scored["generator"].fillna(scored["generator_label"]) if "generator_label" in scored else \
                scored["generator"]
            scored = scored.assign(gen=gen)
            per = scored.dropna(subset=["gen"]).groupby("gen")
            means = per.agg(pred=("score", "mean"), human=("mos", "mean"), n=("score", "size"))
            for m in stats.METRICS:
                rep.model[m] = stats.correlation(m, means["pred"], means["human"], n_resamples, seed)
            rep.generators = [{"generator": g, "n": int(len(grp)), "pred": stats.mean(grp["score"], n_resamples, seed),
                               "human": stats.mean(grp["mos"], n_resamples, seed)} for g, grp in per]
            rep.generators.sort(key=lambda g: -g["pred"].value)
            rep.pairs = scored
        qa = ok.dropna(subset=["answer_label"]) if "answer_label" in ok else pd.DataFrame()
        if len(qa):
            correct = [yes_no(p) == t for p, t in zip(qa["answer"], qa["answer_label"])]
            rep.accuracy = stats.accuracy(correct, n_resamples, seed)
        reports.append(rep)
    return reports


def markdown(reports: list[DimensionReport], results_path: str, labels_path: str, judge: str,
             plots: dict[str, list[str]]) -> str:
    lines = [f"# vidjudge eval: {judge}", "", f"Results `{results_path}`, labels `{labels_path}`. Correlations on raw "
             "scores (no logistic fit); 95% bootstrap intervals in brackets; model level = mean per generator.", "",
             "| dimension | n | SRCC | PLCC | KRCC | generators | model SRCC | model PLCC | model KRCC | QA accuracy |",
             "| --- | ---: | --- | --- | --- | ---: | --- | --- | --- | --- |"]
    for r in reports:
        inst = [str(r.instance.get(m, "-")) for m in stats.METRICS]
        mod = [str(r.model.get(m, "-")) for m in stats.METRICS]
        n_gen = len(r.generators)
        n = r.instance["srcc"].n if "srcc" in r.instance else (r.accuracy.n if r.accuracy else 0)
        lines.append(f"| {r.dimension} | {n} | {' | '.join(inst)} | {n_gen} | {' | '.join(mod)} | "
                     f"{r.accuracy if r.accuracy else '-'} |")
    lines.append("")
    for r in reports:
        lines.append(f"## {r.dimension}")
        lines.append("")
        lines.append(f"{r.labels} labels, {r.matched} matched to results, {r.failed} of those failed to score "
                     "(left out)." + (f" {r.labels - r.matched} labels name no result video." if r.labels > r.matched
                                      else ""))
        lines.append("")
        if r.generators:
            lines += ["| rank | generator | n | judge mean | human mean |", "| ---: | --- | ---: | --- | --- |"]
            for i, g in enumerate(r.generators, 1):
                lines.append(f"| {i} | {g['generator']} | {g['n']} | {g['pred']} | {g['human']} |")
            lines.append("")
        for png in plots.get(r.dimension, []):
            lines += [f"![{Path(png).stem}]({Path(png).name})", ""]
    return "\n".join(lines)
