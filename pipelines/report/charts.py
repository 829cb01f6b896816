"""PNG charts (matplotlib, Agg backend: no display needed on a cluster driver)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from udfs.banding import collision_probability  # noqa: E402

WIDTH, HEIGHT, DPI = 7.0, 3.6, 110
ACCENT, MUTED = "#1f6fb2", "#c0392b"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    # fixed metadata so the same numbers give the same bytes
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _axes(title: str, xlabel: str, ylabel: str):
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    ax.set_title(title, fontsize=12, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def s_curve(bands: int, rows: int, threshold: float) -> bytes:
    """Probability that two documents of Jaccard similarity s become LSH candidates."""
    s = np.linspace(0.0, 1.0, 401)
    fig, ax = _axes(f"LSH S-curve: {bands} bands × {rows} rows", "Jaccard similarity s",
                    "P(candidate pair)")
    ax.plot(s, collision_probability(s, bands, rows), color=ACCENT, lw=2,
            label=rf"$P(s) = 1-(1-s^{{{rows}}})^{{{bands}}}$")
    p_t = float(collision_probability(threshold, bands, rows))
    ax.axvline(threshold, color=MUTED, ls="--", lw=1.5, label=f"threshold {threshold:g}")
    ax.plot([threshold], [p_t], "o", color=MUTED)
    ax.annotate(f"P({threshold:g}) = {p_t:.3f}", (threshold, p_t), textcoords="offset points",
                xytext=(10, -28), ha="left", fontsize=10,
                bbox={"boxstyle": "round", "fc": "white", "ec": "#cccccc"})
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="upper left", frameon=False)
    return _png(fig)


def cluster_sizes(histogram: list[tuple[int, int]]) -> bytes:
    """Number of duplicate clusters per size (log scale: the tail is what matters)."""
    fig, ax = _axes("Duplicate clusters by size", "documents in the cluster (survivor included)",
                    "clusters (log scale)")
    if histogram:
        sizes, counts = zip(*histogram)
        x = np.arange(len(sizes))
        bars = ax.bar(x, counts, color=ACCENT, width=0.7)
        ax.bar_label(bars, [f"{c:,}" for c in counts], fontsize=9, padding=2)
        ax.set_yscale("log")
        ax.set_ylim(0.8, max(counts) * 3)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlim(-0.8, max(len(sizes), 6) - 0.2)
        step = max(1, len(sizes) // 12)
        ax.set_xticks(x[::step], [str(s) for s in sizes[::step]])
    else:
        ax.text(0.5, 0.5, "no duplicate clusters", ha="center", va="center", transform=ax.transAxes)
    return _png(fig)


def stage_seconds(seconds: dict[str, float], title: str = "Seconds per stage") -> bytes:
    """Horizontal bars, in the given order from the top."""
    names = list(seconds)
    fig, ax = _axes(title, "seconds", "")
    fig.set_size_inches(WIDTH, max(1.6, 0.35 * len(names) + 1.0))
    ax.barh(names[::-1], [seconds[n] for n in names][::-1], color=ACCENT)
    for y, name in enumerate(names[::-1]):
        ax.text(seconds[name], y, f" {seconds[name]:.1f}", va="center", fontsize=9)
    ax.grid(True, axis="y", alpha=0)
    return _png(fig)


def shard_fill(fill: list[float], overall: float) -> bytes:
    """Share of each shard's token slots holding tokens (the rest is padding)."""
    fig, ax = _axes("Packing fill per shard", "shard", "fill rate")
    ax.bar(range(len(fill)), fill, color=ACCENT, width=0.7)
    ax.set_xlim(-0.8, max(len(fill), 8) - 0.2)
    ax.axhline(overall, color=MUTED, ls="--", lw=1.5, label=f"overall {overall:.1%}")
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(loc="lower right", frameon=False)
    return _png(fig)
