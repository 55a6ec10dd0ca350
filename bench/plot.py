"""The timeline PNG: one row per instance, who led when, kills marked, leaderless gaps shaded; above
them, when backends were measured, every failover trial per backend and signal on one log-scale axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = {"seed": "#8c564b", "microsoft": "#1f77b4", "client-go": "#2ca02c", "ours": "#d62728",
           "azure": "#d62728", "zookeeper": "#9467bd", "raft": "#ff7f0e",
           "postgres": "#336791", "redis": "#a41e11"}


def backends_panel(ax: Any, columns: dict[str, Any]) -> None:
    """Every trial's failover, one row per backend and signal, with the median marked."""
    labels = []
    for row, (backend, mode) in enumerate((b, m) for b in columns for m in ("crash", "graceful")):
        column = columns[backend]
        values = [t["failover_s"] for t in column[mode]["trials"]]
        colour = COLOURS.get(backend, "#555555")
        ax.plot(values, [row] * len(values), linestyle="none", color=colour, alpha=0.75, markersize=6,
                marker="X" if mode == "crash" else "v")
        median = column[mode]["median"]
        if median is not None:
            ax.plot([median, median], [row - 0.3, row + 0.3], color="black", lw=1.5)
            ax.annotate(f"median {median:.3g} s (n={column[mode]['n']})", (median, row + 0.32), fontsize=7,
                        ha="left", va="bottom")
        labels.append(f"{backend} {'SIGKILL' if mode == 'crash' else 'SIGTERM'}")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(-0.7, len(labels) - 0.1)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("failover, s (log scale): signal -> next leader's journal start", fontsize=8)
    ax.set_title("failover per election backend (each trial; bar = median)", fontsize=9, loc="left")
    ax.grid(axis="x", which="both", alpha=0.3)


def timeline(results: dict[str, Any], path: Path) -> Path:
    groups = results["timeline"]
    t0 = results["t0_mono"]
    columns = {b: c for b, c in (results.get("backends") or {}).items()
               if c["crash"]["trials"] or c["graceful"]["trials"]}
    heights = [len(g["slots"]) + 1.6 for g in groups]
    if columns:
        heights.insert(0, 2 * len(columns) + 2.5)
    fig, axes = plt.subplots(len(heights), 1, figsize=(15, max(3, 0.42 * sum(heights))),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    if columns:
        backends_panel(axes[0, 0], columns)
    end = max((g["end"] for g in groups), default=t0) - t0
    for ax, group in zip(axes[1 if columns else 0:, 0], groups, strict=True):
        slots = group["slots"]
        row = {name: i for i, name in enumerate(slots)}
        colour = COLOURS.get(group.get("backend") if group.get("backend") != "azure" else group["design"], "#555555")
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
    if groups:
        axes[-1, 0].set_xlabel("seconds since the benchmark started (CLOCK_MONOTONIC)")
    fig.suptitle("Who led when: bars = acting as leader (journal start..stop), X = SIGKILL, v = SIGTERM, "
                 "grey = no leader; numbers = failover seconds", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
