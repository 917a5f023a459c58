"""Grouped bar charts of a benchmark run: msg/s per library per case (matplotlib, Agg: no display)."""

from __future__ import annotations

from collections.abc import Sequence


def grouped_bars(
    path: str,
    cases: Sequence[str],
    panels: Sequence[tuple[str, dict[str, list[float]]]],
    *,
    log: bool,
    note: str = "",
) -> None:
    """Write `path` (PNG): one panel per (title, {library: rate per case}), a group of bars per case.

    `log` draws the rate axis on a log scale (for runs whose sizes differ by orders of magnitude).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    def short(value: float, _: object) -> str:
        return f"{value / 1e3:g}k" if value >= 1e3 else f"{value:g}"

    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(7.0, 1.1 * len(cases) + 3.5), 3.6 * len(panels)), squeeze=False
    )
    for ax, (title, rates) in zip(axes[:, 0], panels, strict=True):
        width = 0.8 / len(rates)
        for j, (name, values) in enumerate(rates.items()):
            xs = [i - 0.4 + width * (j + 0.5) for i in range(len(cases))]
            ax.bar(xs, values, width, label=name)
        ax.set_xticks(range(len(cases)), cases, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("round trips/s")
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            ax.yaxis.set_minor_formatter(FuncFormatter(short))
        ax.yaxis.set_major_formatter(FuncFormatter(short))
        ax.tick_params(axis="y", which="both", labelsize=7)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if note:
        fig.text(0.01, 0.005, note, fontsize=6, alpha=0.7, wrap=True)
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)
