"""The timeline PNG: one row per instance, who led when, kills marked, leaderless gaps shaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = {"seed": "#8c564b", "microsoft": "#1f77b4", "client-go": "#2ca02c", "ours": "#d62728"}


def timeline(results: dict[str, Any], path: Path) -> Path:
    groups = results["timeline"]
    t0 = results["t0_mono"]
    heights = [len(g["slots"]) + 1.6 for g in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(15, max(3, 0.42 * sum(heights))),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    end = max((g["end"] for g in groups), default=t0) - t0
    for ax, group in zip(axes[:, 0], groups, strict=True):
        slots = group["slots"]
        row = {name: i for i, name in enumerate(slots)}
        colour = COLOURS.get(group["design"], "#555555")
        for interval in group["intervals"]:
            y = row.get(interval["slot"])
            if y is None:
                continue
            ax.broken_barh([(interval["start"] - t0, interval["stop"] - interval["start"])], (y - 0.35, 0.7),
                           facecolors=colour, alpha=0.85)
        # Leaderless stretches: between one interval's end and the next one's start.
        intervals = sorted(group["intervals"], key=lambda i: i["start"])
        covered_until = None
        for interval in intervals:
            if covered_until is not None and interval["start"] > covered_until:
                ax.axvspan(covered_until - t0, interval["start"] - t0, color="#999999", alpha=0.25, lw=0)
            covered_until = max(covered_until or interval["stop"], interval["stop"])
        for trial in group["trials"]:
            y = row.get(trial["victim"], 0)
            x = trial["signal_mono"] - t0
            marker = "X" if trial["mode"] == "crash" else "v"
            ax.plot([x], [y], marker=marker, color="black", markersize=9, zorder=5)
            ax.annotate(f"{trial['failover_s']:.1f} s", (x, len(slots) - 0.45 + 0.35 * (trial["trial"] % 2)),
                        fontsize=7, ha="left",
                        va="bottom", color="#222222")
        ax.set_yticks(range(len(slots)))
        ax.set_yticklabels(slots, fontsize=8)
        ax.set_ylim(-0.7, len(slots) + 0.4)
        ax.set_xlim(0, end + 1)
        ax.invert_yaxis()
        ax.set_title(f"{group['group']}", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("seconds since the benchmark started (CLOCK_MONOTONIC)")
    fig.suptitle("Who led when: bars = acting as leader (journal start..stop), X = SIGKILL, v = SIGTERM, "
                 "grey = no leader; numbers = failover seconds", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
