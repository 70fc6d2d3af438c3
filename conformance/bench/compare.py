"""Compare: ratios between rows of one run, and the regression gate.

A row's ratio is its time over a reference row's (the baseline backend, or `--before`) for the
same machine, device, dtype, size and pass, taken round by round from the interleaved blocks of
one run (measurement.Ratio): what drifts (clock, load, thermal state, another machine) hits both
and cancels. The gate then decides, from intervals, never from a bare threshold on two medians:

- across runs (`--compare OLD`): the change of each row's ratio, new / old, whose interval is the
  quotient of the two runs' intervals (stats.quotient);
- within one run (`--before BACKEND/MODE`): each row's ratio to the before-row directly, the
  tighter test, since both versions saw the same rounds.

stats.decide turns an interval into SLOWER, FASTER, same or INCONCLUSIVE; a row measured under
contention (in either run) is INCONCLUSIVE whatever its interval says. Between two runs whose
machine was not in the same state (machine_change), every interval of a change is widened by the
factor its fingerprint moved: in a VM the host beside it can change between runs (measured here:
the copy bandwidth went from 27-29 GB/s in four runs to 38 GB/s in a fifth, and the ratios of
unlike kernels moved by up to 25% with it), which pairing within a run cannot cancel; a 2x
regression still shows, a 10% one then reads INCONCLUSIVE.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import stats
from .measurement import Measurement

KEY = ("backend", "mode", "device", "dtype", "N", "C", "pass")
SAME_STATE = 0.15  # two runs' machine fingerprints (copy bandwidth, calibration kernel) agree within this
# (best-of-5 copies in one state differed by 5%)
EXIT = {stats.SLOWER: 1, stats.INCONCLUSIVE: 3}  # else 0; 2 is bad usage


def label(r: dict) -> str:
    return f"{r['backend']}/{r['mode']}"


def row_key(r: dict) -> tuple:
    return tuple(r[k] for k in KEY)


def add_ratios(records: list[dict], reference: str, prefix: str = "ratio") -> bool:
    """Set every record's ratio to the `reference` row of its cell (None where that row is missing
    or failed), with its interval, pairs and contention; True if the reference has any row here."""
    cell = lambda r: (r.get("machine"), r["device"], r["dtype"], r["N"], r["C"], r["pass"])  # noqa: E731
    refs = {cell(r): r for r in records if label(r) == reference and r["status"] == "ok"}
    for r in records:
        ref = refs.get(cell(r))
        ratio = None
        if ref is not None and r["status"] == "ok":
            ratio = Measurement(r["block_s"], r.get("process_starts")).ratio_to(Measurement(ref["block_s"]))
        if ratio is None:
            r.update({prefix: None, f"{prefix}_lo": None, f"{prefix}_hi": None, f"{prefix}_blocks": 0,
                      f"{prefix}_processes": [], f"{prefix}_contended": False})
            continue
        r.update(ratio.fields(prefix))
        r[f"{prefix}_contended"] = bool(r.get("contended") or ref.get("contended"))
    return any(label(r) == reference for r in records)


def machine_change(old_env: dict, new_env: dict) -> tuple[float, str | None]:
    """How far two runs' machine state moved, as a factor (1: the same state), and why, or None
    when it is the same state: its copy bandwidth (measured at the start and at the end of each
    run) or the calibration kernel's median time (over every round) differ by more than
    SAME_STATE. Runs that lack a figure are not judged on it."""
    def figures(env: dict) -> dict:
        bw = lambda key: ((env.get(key) or {}).get("cpu") or {}).get("gbps")  # noqa: E731
        return {"copy bandwidth at the start, GB/s": bw("bandwidth"),
                "copy bandwidth at the end, GB/s": bw("bandwidth_end"),
                "calibration kernel, us": env["calibration_s"] * 1e6 if env.get("calibration_s") else None}
    old, new = figures(old_env), figures(new_env)
    factors = {name: max(old[name], new[name]) / min(old[name], new[name]) for name in old if old[name] and new[name]}
    moved = [f"{name} {old[name]:.3g} then {new[name]:.3g}" for name, f in factors.items() if f - 1 > SAME_STATE]
    if not moved:
        return 1.0, None
    factor = max(factors.values())
    return factor, f"the machine was not in the same state ({'; '.join(moved)}): interval widened {factor:.2f}x"


@dataclass
class Change:
    row: dict  # the record in the new run
    verdict: str  # stats' four answers, or: baseline, not comparable, not measured, new row
    basis: str = ""  # ratio, before, median
    old: float | None = None
    new: float | None = None
    interval: tuple[float, float] | None = None  # of new / old
    note: str = ""

    @property
    def change(self) -> float | None:
        return None if self.old is None or self.new is None else self.new / self.old - 1


def _interval(r: dict, prefix: str) -> tuple[float, float] | None:
    lo, hi = r.get(f"{prefix}_lo"), r.get(f"{prefix}_hi")
    return None if lo is None or hi is None else (lo, hi)


def _judge(row: dict, basis: str, old: float, new: float, interval, contended: bool, max_slowdown: float) -> Change:
    if contended:
        return Change(row, stats.INCONCLUSIVE, basis, old, new, interval, "measured under contention")
    verdict = stats.decide(interval, max_slowdown)
    note = "" if interval else "no interval (too few blocks, or an older bench.json)"
    return Change(row, verdict, basis, old, new, interval, note)


class Gate:
    """The verdicts of one run's rows; `exit_status` 1 if any is SLOWER, else 3 if any is
    INCONCLUSIVE, else 0."""

    changes: list[Change]
    max_slowdown: float

    def counts(self) -> dict:
        out: dict = {}
        for c in self.changes:
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out

    @property
    def exit_status(self) -> int:
        verdicts = {c.verdict for c in self.changes}
        return next((code for v, code in EXIT.items() if v in verdicts), 0)

    @property
    def failed(self) -> bool:
        return self.exit_status == 1


class Compare(Gate):
    """Every row of `new` against the same row of `old` (same machine where both have it)."""

    def __init__(self, old: dict, new: dict, max_slowdown: float, absolute: bool = False):
        self.max_slowdown, self.absolute = max_slowdown, absolute
        self.baseline = new.get("baseline")
        self.same_baseline = old.get("baseline") == self.baseline  # ratios to different backends do not compare
        self.machine_factor, self.machine_note = machine_change(old.get("environment", {}), new.get("environment", {}))
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
        if self.same_baseline and label(new) != self.baseline and new.get("ratio") and old.get("ratio"):
            if "ratio_lo" not in old:
                return Change(new, "not comparable", note="no intervals in the older file (format 1)")
            a, b = _interval(old, "ratio"), _interval(new, "ratio")
            contended = bool(old.get("ratio_contended") or new.get("ratio_contended"))
            return self._decide(new, "ratio", old["ratio"], new["ratio"], a and b and stats.quotient(b, a), contended)
        if self.absolute:
            a, b = (old.get("median_lo_s"), old.get("median_hi_s")), (new.get("median_lo_s"), new.get("median_hi_s"))
            interval = stats.quotient(b, a) if None not in a + b else None
            contended = bool(old.get("contended") or new.get("contended"))
            return self._decide(new, "median", old["median_s"], new["median_s"], interval, contended)
        return Change(new, "baseline" if label(new) == self.baseline else "not comparable")

    def _decide(self, new: dict, basis: str, old_value: float, new_value: float, interval, contended: bool) -> Change:
        if self.machine_note and interval:
            interval = (interval[0] / self.machine_factor, interval[1] * self.machine_factor)
        change = _judge(new, basis, old_value, new_value, interval, contended, self.max_slowdown)
        if self.machine_note and not contended:
            change.note = "; ".join(n for n in (change.note, self.machine_note) if n)
        return change


class AgainstBefore(Gate):
    """Every row of one run against the before-row of its cell (`--before BACKEND/MODE`)."""

    def __init__(self, doc: dict, max_slowdown: float):
        self.max_slowdown, self.before = max_slowdown, doc["before"]
        self.changes = []
        for r in doc["records"]:
            if label(r) == self.before:
                continue
            if r["status"] != "ok" or r.get("before_ratio") is None:
                self.changes.append(Change(r, "not measured" if r["status"] != "ok" else "not comparable",
                                           note="" if r["status"] != "ok" else "no before-row in its cell"))
                continue
            self.changes.append(_judge(r, "before", 1.0, r["before_ratio"], _interval(r, "before_ratio"),
                                       r["before_ratio_contended"], max_slowdown))
