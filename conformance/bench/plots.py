"""Plots of a bench document, PNG and SVG (matplotlib, Agg): the median time per call against N*C
(log-log, one line per backend/mode, bars: the median's 95% interval), and the speed-up over the
baseline backend for each size (1 / ratio; above 1 is faster; bars: the ratio's 95% interval).
Contended rows are drawn hatched in the speed-up plot."""

from __future__ import annotations

import os
from pathlib import Path

from . import grid

FILES = (("bench-time", "median time per call against N*C"), ("bench-speedup", "speed-up over the baseline"))


def series(r: dict, machines: bool) -> str:
    s = f"{r['backend']}/{r['mode']} ({r['device']}, {r['dtype']})"
    return f"{s} @{r['machine']}" if machines else s


def write(doc: dict, out_dir: Path) -> list[tuple[str, str]]:
    """Write the plots; returns (file name of the PNG, description) for each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in doc["records"] if r["status"] == "ok"]
    machines = len({r.get("machine") for r in ok}) > 1
    passes = [p for p in grid.PASSES if any(r["pass"] == p for r in ok)] or list(grid.PASSES)
    out = []
    for (name, alt), draw in zip(FILES, (_time, _speedup)):
        fig, axes = plt.subplots(1, len(passes), figsize=(6.5 * len(passes), 5), squeeze=False)
        for ax, p in zip(axes[0], passes):
            draw(ax, [r for r in ok if r["pass"] == p], machines, doc)
            ax.set_title(p)
        handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
        if handles:
            fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=2, fontsize="small", frameon=False)
            fig.subplots_adjust(bottom=0.12 + 0.035 * ((len(handles) + 1) // 2), wspace=0.25)
        for ext in ("png", "svg"):
            _save(fig, Path(out_dir) / f"{name}.{ext}", ext)
        plt.close(fig)
        out.append((f"{name}.png", alt))
    return out


def _time(ax, rows: list[dict], machines: bool, doc: dict) -> None:
    lines: dict = {}
    for r in rows:
        lines.setdefault(series(r, machines), []).append(r)
    for name, rs in sorted(lines.items()):
        rs.sort(key=lambda r: r["N"] * r["C"])
        x = [r["N"] * r["C"] for r in rs]
        y = [r["median_s"] for r in rs]
        err = [[r["median_s"] - (r.get("median_lo_s") or r["median_s"]) for r in rs],
               [(r.get("median_hi_s") or r["median_s"]) - r["median_s"] for r in rs]]
        ax.errorbar(x, y, yerr=err, marker="o", markersize=4, capsize=2, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N * C (elements)")
    ax.set_ylabel("median time per call (s)")
    ax.grid(True, which="both", alpha=0.3)


def _speedup(ax, rows: list[dict], machines: bool, doc: dict) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rows = [r for r in rows if r.get("ratio") and f"{r['backend']}/{r['mode']}" != doc.get("baseline")]
    if not rows:
        why = "no other row to compare" if doc.get("baseline_found") else "it is not in this run"
        ax.text(0.5, 0.5, f"no ratios to the baseline {doc.get('baseline')}: {why}",
                ha="center", va="center", transform=ax.transAxes, wrap=True)
        ax.set_axis_off()
        return
    sizes = sorted({(r["N"], r["C"]) for r in rows}, key=lambda s: s[0] * s[1])
    names = sorted({series(r, machines) for r in rows})
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        mine = [r for r in rows if series(r, machines) == name]
        mine.sort(key=lambda r: sizes.index((r["N"], r["C"])))
        xs = [sizes.index((r["N"], r["C"])) + (k - (len(names) - 1) / 2) * width for r in mine]
        ys = [1 / r["ratio"] for r in mine]
        err = [[y - 1 / (r.get("ratio_hi") or r["ratio"]) for y, r in zip(ys, mine)],
               [1 / (r.get("ratio_lo") or r["ratio"]) - y for y, r in zip(ys, mine)]]
        bars = ax.bar(xs, ys, width, yerr=err, capsize=2, label=name)
        for bar, r in zip(bars, mine):
            if r.get("ratio_contended"):
                bar.set_hatch("//")
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_xticks(range(len(sizes)), [f"{n}x{c}" for n, c in sizes])
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(f"speed-up over {doc.get('baseline')}")
    ax.grid(True, axis="y", which="both", alpha=0.3)


def _save(fig, path: Path, fmt: str) -> None:
    """Readers see the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(tmp, format=fmt, dpi=120)
    os.replace(tmp, path)
