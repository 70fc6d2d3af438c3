"""Compare: ratios to the baseline backend within a run, and the regression gate between runs.

A row's ratio is its median over the baseline backend's median for the same machine, device,
dtype, size and pass, both from the same run: what drifts between runs (clock, load, thermal state,
another machine) moves both and cancels. The gate puts each row's ratio now against its ratio in
an earlier bench.json; rows without a ratio in either file (no baseline there, or the baseline row
itself) are compared on their raw medians only when asked (`absolute`).
"""

from __future__ import annotations

from dataclasses import dataclass

KEY = ("backend", "mode", "device", "dtype", "N", "C", "pass")


def label(r: dict) -> str:
    return f"{r['backend']}/{r['mode']}"


def row_key(r: dict) -> tuple:
    return tuple(r[k] for k in KEY)


def add_ratios(records: list[dict], baseline: str) -> bool:
    """Set every record's `ratio` (None where its baseline row is missing or failed); True if the
    baseline backend/mode has any row in this run."""
    where = lambda r: (r.get("machine"), r["device"], r["dtype"], r["N"], r["C"], r["pass"])  # noqa: E731
    base = {where(r): r["median_s"] for r in records if label(r) == baseline and r["status"] == "ok"}
    for r in records:
        b = base.get(where(r))
        r["ratio"] = r["median_s"] / b if b and r["status"] == "ok" else None
    return any(label(r) == baseline for r in records)


@dataclass
class Change:
    row: dict  # the record in the new run
    verdict: str  # ok, SLOWER, faster, baseline, not comparable, not measured, new row
    basis: str = ""  # ratio or median
    old: float | None = None
    new: float | None = None

    @property
    def change(self) -> float | None:
        return None if self.old is None or self.new is None else self.new / self.old - 1


class Compare:
    """Every row of `new` against the same row of `old`; `failed` when any got slower than
    `max_slowdown` allows (0.1: ten per cent)."""

    def __init__(self, old: dict, new: dict, max_slowdown: float, absolute: bool = False):
        self.max_slowdown, self.absolute = max_slowdown, absolute
        self.baseline = new.get("baseline")
        self.same_baseline = old.get("baseline") == self.baseline  # ratios to different backends do not compare
        index: dict = {}
        for r in old["records"]:
            index.setdefault(row_key(r), []).append(r)
        self.changes = []
        for r in new["records"]:
            candidates = index.get(row_key(r), [])
            same_machine = [o for o in candidates if o.get("machine") == r.get("machine")]
            self.changes.append(self._judge((same_machine or candidates or [None])[0], r))

    def _judge(self, old: dict | None, new: dict) -> Change:
        if old is None:
            return Change(new, "new row")
        if new["status"] != "ok" or old["status"] != "ok":
            return Change(new, "not measured")
        ratios = self.same_baseline and old.get("ratio") is not None and new.get("ratio") is not None
        if ratios and label(new) != self.baseline:
            basis, a, b = "ratio", old["ratio"], new["ratio"]
        elif self.absolute:
            basis, a, b = "median", old["median_s"], new["median_s"]
        else:
            return Change(new, "baseline" if label(new) == self.baseline else "not comparable")
        limit = 1 + self.max_slowdown
        verdict = "SLOWER" if b > a * limit else "faster" if b * limit < a else "ok"
        return Change(new, verdict, basis, a, b)

    @property
    def failed(self) -> bool:
        return any(c.verdict == "SLOWER" for c in self.changes)

    def counts(self) -> dict:
        out: dict = {}
        for c in self.changes:
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out
