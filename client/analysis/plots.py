"""PNG plots for the eval report (matplotlib, headless Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter(report, out_dir: Path) -> Path | None:
    """Judge score against human MOS, one point per video, with the instance-level correlations."""
    if report.pairs is None or not len(report.pairs):
        return None
    plt = _plt()
    df = report.pairs
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=110)
    ax.scatter(df["mos"], df["score"], s=10, alpha=0.6, edgecolors="none")
    ax.set_xlabel("human MOS")
    ax.set_ylabel("judge score")
    srcc, plcc = report.instance.get("srcc"), report.instance.get("plcc")
    ax.set_title(f"{report.dimension}: SRCC {srcc.value:.3f}, PLCC {plcc.value:.3f} (n={srcc.n})", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / f"scatter_{report.dimension}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def ranking(report, out_dir: Path) -> Path | None:
    """Generators ranked by the judge (mean and 95% interval) beside their human mean and interval."""
    gens = report.generators
    if len(gens) < 2:
        return None
    plt = _plt()
    names = [g["generator"] for g in gens][::-1]  # best on top
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.45 * len(gens) + 1.6), dpi=110, sharey=True)
    for ax, key, title in ((axes[0], "pred", "judge score"), (axes[1], "human", "human MOS")):
        est = [g[key] for g in gens][::-1]
        vals = [e.value for e in est]
        lo = [max(0.0, e.value - e.low) if e.low == e.low else 0.0 for e in est]
        hi = [max(0.0, e.high - e.value) if e.high == e.high else 0.0 for e in est]
        ax.errorbar(vals, range(len(names)), xerr=[lo, hi], fmt="o", capsize=3)
        ax.set_xlabel(f"{title} (mean, 95% CI)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names)
    m = report.model.get("srcc")
    fig.suptitle(f"{report.dimension}: generators ranked by the judge"
                 + (f" (model-level SRCC {m.value:.3f})" if m and m.value == m.value else ""), fontsize=10)
    fig.tight_layout()
    path = out_dir / f"ranking_{report.dimension}.png"
    fig.savefig(path)
    plt.close(fig)
    return path
