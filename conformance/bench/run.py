"""Running a benchmark: every backend's worker alive at once, the rows of each size and pass timed
interleaved, block by block, and the records (what bench.json holds).

For each cell (device, dtype, size, pass) the harness prepares the row of every backend and mode
in its worker (first call, warm-up), then runs rounds: each round gives every active row one block
of back-to-back calls lasting about `block_s`, in a shuffled order, with a calibration kernel in
the harness between rounds. Whatever drifts during a cell (clock speed, a neighbour, the
hypervisor) hits every row of a round alike, so the ratio of two rows is taken round by round, and
its median gets a distribution-free 95% interval (stats.py). A row leaves the rounds once its
ratio to each reference row (the baseline, and `--before`) is known within `precision`, a
reference once no other row needs it; a cell stops there, or when its time budget is spent
(`budget_s` per row), after at least `min_blocks` rounds. All of this happens `processes` times,
with every backend's workers started afresh each time and a share of the rounds and budget each:
a kernel's speed can depend on its process (measurement.py).

Around each block the harness reads /proc/stat and the worker reports its threads' scheduler
accounts, so each row records the threads it really used (CPU seconds per second), the CPU time
other processes took meanwhile, the hypervisor's steal, and the time its threads waited runnable
for a CPU, and each cell the drift of the calibration kernel. A row is flagged contended when the
other processes left it fewer CPUs than its threads (less SLACK), or the hypervisor stole more than
CONTENDED of its time: its ratio is then not a fair figure. Run-queue waits and calibration drift
are recorded, not judged: a kernel that hands work between its own threads waits on a quiet
machine too, and a drift common to all rows of a round cancels in their ratios. The calibration
kernel runs on each CPU in turn: a cell whose CPUs' speed swung by more than UNSTEADY has its rows
flagged unsteady (their intervals carry it).
"""

from __future__ import annotations

import math
import os
import platform
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..worker import Worker, WorkerDied
from . import compare, grid, machine, stats, threads
from .measurement import NOISY, Measurement

UNSTEADY = 0.2  # a cell whose CPUs' speed swung more than this (swing): its rows are flagged unsteady
CONTENDED = 0.05  # the hypervisor's steal above this share of a row's time: contended
SLACK = 0.5  # CPUs' worth of other work a row tolerates: the harness, the kernel's daemons and the
# other workers' threads winding down took 0.1 to 0.3 on a quiet 2-core machine; a busy process takes 1


@dataclass
class Settings:
    sizes: list | None = None  # None: the grid, its size beyond the cache chosen from the measured LLC
    dtypes: list = field(default_factory=lambda: ["float32"])
    passes: list = field(default_factory=lambda: list(grid.PASSES))
    devices: list | None = None  # None: every device a backend has
    modes: list | None = None  # None: every mode (first_mode_only: the first, and the baseline's)
    first_mode_only: bool = False
    threads: int = field(default_factory=threads.available)
    budget_s: float = 2.0  # measured seconds per row at most, once min_blocks are done
    block_s: float = 0.02  # a block of back-to-back calls lasts about this long
    warmup_s: float = 0.25
    precision: float = 0.02  # a ratio is known once its interval reaches at most 2% from its estimate
    min_blocks: int = 9
    max_blocks: int = 400
    processes: int = 3  # worker processes each row is measured in, one after another (measurement.py)
    noisy: float = NOISY
    baseline: str = "torch/eager"
    before: str | None = None  # BACKEND/MODE: the rows every other row is gated against in this run
    timeout: float = 600.0  # seconds one request (a row's preparation, a block) may take
    seed: int = 0  # the order of the rows within each round


def label(r: dict) -> str:
    return f"{r['backend']}/{r['mode']}"


def run(backends: list[str], settings: Settings, work_dir: Path, progress=None) -> dict:
    """Every backend's rows; returns the bench document."""
    work_dir.mkdir(parents=True, exist_ok=True)
    llc = machine.llc_bytes()
    sizes = settings.sizes or grid.default_sizes(llc)
    env = environment(settings.threads, llc)
    env["load_average_before"] = os.getloadavg()[0]
    n = settings.threads
    env["bandwidth"] = {"cpu": machine.cpu_bandwidth(n, llc)}  # before the workers load the CPUs
    grad_bytes = [nn * c * grid.itemsize(d) for nn, c in sizes for d in settings.dtypes]
    env["fresh_copy"] = machine.fresh_copies(grad_bytes if "fwd+bwd" in settings.passes else [], n)
    cells: dict[tuple, Cell] = {}
    rng = random.Random(settings.seed)
    for process in range(settings.processes):  # fresh workers each time: see measurement.py
        workers = Workers(backends, settings, work_dir)
        try:
            if not process:
                rows, descriptions = workers.plan(sizes), workers.descriptions
                for r in rows:
                    key = (r["device"], r["dtype"], r["N"], r["C"], r["pass"])
                    cells.setdefault(key, Cell([], settings, rng)).rows.append(r)
            else:
                workers.start()
            for i, cell in enumerate(cells.values()):
                cell.measure(workers)
                if progress:
                    r = cell.rows[0]
                    progress(f"{r['N']}x{r['C']} {r['pass']}, process {process + 1}/{settings.processes}",
                             process * len(cells) + i + 1, settings.processes * len(cells))
        finally:
            workers.close()
    for cell in cells.values():
        cell.finish()
    every_round = [t for cell in cells.values() for t in cell.calibration]
    env["cpu_swing"] = swing(every_round)
    env["calibration_s"] = stats.median([t for r in every_round for t in r]) if every_round else None
    env["bandwidth_end"] = {"cpu": machine.cpu_bandwidth(n, llc)}  # the workers are gone: a quiet machine again
    env["load_average_after"] = os.getloadavg()[0]
    env["versions"] = {b: d.get("version") for b, d in descriptions.items() if "missing" not in d}
    env["thread_controls"] = {b: d.pop("thread_controls") for b, d in descriptions.items()
                              if "thread_controls" in d}
    for device in sorted({r["device"] for r in rows if r["status"] == "ok"} - {"cpu"}):
        env["bandwidth"][device] = machine.device_bandwidth(device, _session_env(n))
    for r in rows:
        _roofline(r, env)
        r["machine"] = env["machine"]
    found = compare.add_ratios(rows, settings.baseline)
    if settings.before:
        compare.add_ratios(rows, settings.before, prefix="before_ratio")
    for r in rows:
        r["noisy"] = _noisy(r, settings) if r["status"] == "ok" else None
    return {"kind": "mmconf-bench", "format": 2, "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "environment": env, "settings": {**asdict(settings), "sizes": sizes, "call": grid.CALL},
            "baseline": settings.baseline, "baseline_found": found, "before": settings.before,
            "backends": descriptions, "records": rows}


def environment(n: int, llc: int | None) -> dict:
    from ..runner import environment as base

    env = base()
    env.update(machine=platform.node(), threads=n, cpus_available=threads.available(), llc_bytes=llc)
    return env


def _noisy(r: dict, s: Settings) -> bool:
    """The row's figure is wide: its ratio's interval (the median's, for a reference row or in a
    run without one) reaches further than `s.noisy` from the estimate, over all its processes."""
    if r.get("ratio_lo") is not None and label(r) != s.baseline:
        return stats.relative_width(r["ratio"], (r["ratio_lo"], r["ratio_hi"])) > s.noisy
    return stats.relative_width(r["median_s"], (r["median_lo_s"], r["median_hi_s"])) > s.noisy


def _roofline(r: dict, env: dict) -> None:
    """GB/s of the least traffic a call needs, as % of the copy into a reused buffer and, for
    fwd+bwd, of the copy into a fresh output of the gradient's size (4 KiB and huge pages)."""
    r["bytes"] = grid.bytes_moved(r["N"], r["C"], r["dtype"], r["pass"])
    r.update(gbps=None, pct_bandwidth=None, pct_fresh=None, pct_fresh_huge=None)
    if r["status"] != "ok":
        return
    r["gbps"] = r["bytes"] / r["median_s"] / 1e9
    bandwidth = env["bandwidth"]
    bw = (bandwidth.get(r["device"]) or bandwidth.get(r["device"].split(":")[0]) or {}).get("gbps")
    r["pct_bandwidth"] = 100 * r["gbps"] / bw if bw else None
    fresh = env.get("fresh_copy", {}).get(str(r["bytes"] // 2)) if r["pass"] == "fwd+bwd" else None
    if fresh and r["device"] == "cpu":
        for key, pages in (("pct_fresh", "small"), ("pct_fresh_huge", "huge")):
            gbps = fresh[pages].get("gbps")
            r[key] = 100 * r["gbps"] / gbps if gbps else None


def _session_env(n: int) -> dict:
    """A worker's environment: the thread settings, and none of an enclosing pytest's variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return {**env, **threads.environment(n), "MMCONF_BENCH_THREADS": str(n)}


class Workers:
    """One bench worker per backend, all alive together (started at once: imports take seconds)."""

    def __init__(self, backends: list[str], settings: Settings, work_dir: Path):
        self.settings, self.env = settings, _session_env(settings.threads)
        self.by_spec = {spec: Worker(spec, timeout=settings.timeout, log_dir=work_dir,
                                     module="conformance.bench.worker", env=self.env) for spec in backends}
        self.descriptions: dict[str, dict] = {}

    def request(self, spec: str, req: dict) -> dict:
        return self.by_spec[spec].request(req)

    def plan(self, sizes: list) -> list[dict]:
        """Start every worker, then list the rows: each (device, mode, dtype, size, pass) the
        settings ask for and the backend has; dtypes the adapter does not declare stay in, to be
        reported as unsupported."""
        s = self.settings
        replies = self.start()
        rows = []
        for spec, reply in replies.items():
            if "describe" not in reply:
                self.descriptions[spec] = {"missing": reply.get("missing") or str(reply)[:1000]}
                continue
            desc = self.descriptions[spec] = {**reply["describe"], "thread_controls": reply["threads"]}
            modes = s.modes or (self._first_modes(spec, desc["modes"]) if s.first_mode_only else desc["modes"])
            want = lambda chosen, have: [x for x in have if not chosen or x in chosen]  # noqa: E731
            for device in want(s.devices, desc["devices"]):
                for mode in want(modes, desc["modes"]):
                    for dtype in s.dtypes:
                        for n, c in sizes:
                            for p in s.passes:
                                rows.append(_row(spec, device, mode, dtype, n, c, p, desc.get("threads") or s.threads))
        order = {(n, c): i for i, (n, c) in enumerate(sizes)}
        return sorted(rows, key=lambda r: (r["device"], s.dtypes.index(r["dtype"]), order[(r["N"], r["C"])],
                                           grid.PASSES.index(r["pass"])))

    def start(self) -> dict:
        """Start every worker at once; each one's description (or why it is missing)."""
        with ThreadPoolExecutor(len(self.by_spec) or 1) as pool:
            return dict(zip(self.by_spec, pool.map(self._describe, self.by_spec)))

    def _describe(self, spec: str) -> dict:
        try:
            return self.request(spec, {"op": "describe"})
        except WorkerDied as e:
            return {"missing": f"the worker died while loading: {e}"}

    def _first_modes(self, spec: str, modes: list) -> list[str]:
        base, _, mode = self.settings.baseline.partition("/")
        return sorted({modes[0], mode} if base == spec and mode in modes else {modes[0]})

    def close(self) -> None:
        for w in self.by_spec.values():
            w.close()


def _drift(rounds: list[list[float]]) -> float:
    """How far the calibration kernel's median (over the CPUs) moved from the first half of a cell's
    rounds to the second, as a fraction: a CPU that got slower or faster for a while (a neighbour,
    the clock, the hypervisor). Round-to-round jitter is not drift: pairing cancels it, the
    intervals carry it."""
    times = [stats.median(r) for r in rounds]
    half = len(times) // 2
    if half < 2:
        return 0.0
    a, b = stats.median(times[:half]), stats.median(times[half:])
    return max(a, b) / min(a, b) - 1


def swing(rounds: list[list[float]]) -> float:
    """How much the CPUs' speed varied: the calibration kernel's 90th over its 10th percentile, over
    every CPU and round, less 1. Pairing cancels only what changes slower than a round; a swing
    well above the block-to-block noise widens every interval."""
    times = [t for r in rounds for t in r]
    return stats.quantile(times, 0.9) / stats.quantile(times, 0.1) - 1 if len(times) > 1 else 0.0


# what a row that was not measured holds in place of figures
UNMEASURED = dict.fromkeys((
    "median_s", "median_lo_s", "median_hi_s", "q1_s", "q3_s", "iqr_s", "min_s", "blocks", "block_s", "calls_per_block",
    "first_call_s", "compile_s", "warmup_calls", "peak_bytes", "peak_kind", "clock", "cpu_threads", "wait_share",
    "others_cpus", "steal_share", "calibration_drift", "cpu_swing", "unsteady", "contended", "contention",
    "process_starts"))


def _row(spec, device, mode, dtype, n, c, p, threads_: int) -> dict:
    return {**UNMEASURED, "backend": spec, "mode": mode, "device": device, "dtype": dtype, "N": n, "C": c, "pass": p,
            "id": grid.row_id(spec, device, mode, dtype, n, c, p), "status": "planned", "detail": "",
            "threads": threads_}


class Cell:
    """The rows of one device, dtype, size and pass, measured interleaved, in one worker process
    after another (`measure` once per process, then `finish`)."""

    def __init__(self, rows: list[dict], settings: Settings, rng: random.Random):
        self.rows, self.s, self.rng = rows, settings, rng
        self.refs = {settings.baseline, settings.before} - {None}
        self.per_call: dict[str, list] = {}
        self.calls: dict[str, int] = {}
        self.usage: dict[str, dict] = {}  # row id -> summed wall, cpu, wait, others, steal seconds
        self.calibration: list[list[float]] = []  # each round's seconds of the calibration kernel per CPU
        self.starts: list[int] = []  # the first round of each process

    def measure(self, workers: Workers) -> None:
        """This process's share of the rounds: at least min_blocks over the processes (and enough
        for an interval in each), a share of the budget and of max_blocks."""
        self.workers = workers
        k = self.s.processes
        ok = [r for r in self.rows if (r["status"] == "ok" or not self.starts) and self._prepare(r)]
        first = len(self.calibration)  # rounds so far: one calibration each
        self.starts.append(first)
        active = list(ok)
        spent = 0.0
        least = max(stats.MIN_VALUES, math.ceil(self.s.min_blocks / k))
        while active and len(self.calibration) - first < math.ceil(self.s.max_blocks / k):
            round_ = len(self.calibration)
            self.calibration.append(machine.calibrate())
            order = list(active)
            self.rng.shuffle(order)
            for r in order:
                spent += self._block(r, round_)
            active = [r for r in active if r["status"] == "ok"]
            for r in active:
                self.per_call[r["id"]].extend([None] * (round_ + 1 - len(self.per_call[r["id"]])))
            if round_ + 1 - first >= least:
                if spent > self.s.budget_s / k * len(ok):
                    break
                active = self._still_needed(active)
        for r in ok:
            if r["status"] == "ok":
                workers.request(r["backend"], {"op": "release", "id": r["id"]})

    def finish(self) -> None:
        for r in self.rows:
            if r["status"] == "ok":
                self._finish(r)

    def _prepare(self, r: dict) -> bool:
        try:
            reply = self.workers.request(r["backend"], {"op": "prepare", "row": r, "warmup_s": self.s.warmup_s})
        except WorkerDied as e:
            r.update(status=e.kind, detail=e.detail)
            return False
        r["status"], r["detail"] = reply.get("status", "error"), reply.get("detail", str(reply)[:500])
        if r["status"] != "ok":
            return False
        if r["id"] in self.calls:  # a later process: its blocks keep the first one's calls
            return True
        r.update({k: reply[k] for k in ("first_call_s", "warmup_calls", "peak_bytes", "peak_kind", "clock")})
        self.calls[r["id"]] = max(1, math.ceil(self.s.block_s / max(reply["estimate_s"], 1e-9)))
        self.per_call[r["id"]] = []
        self.usage[r["id"]] = dict.fromkeys(("wall", "cpu", "wait", "others", "steal"), 0.0)
        return True

    def _block(self, r: dict, round_: int) -> float:
        """One block of the row; returns its wall time."""
        calls = self.calls[r["id"]]
        before = machine.cpu_seconds()
        try:
            b = self.workers.request(r["backend"], {"op": "block", "id": r["id"], "calls": calls})
        except WorkerDied as e:
            r.update(status=e.kind, detail=f"{e.detail} (while timing)")
            return 0.0
        after = machine.cpu_seconds()
        if "seconds" not in b:
            r.update(status="error", detail=str(b)[:500])
            return 0.0
        series = self.per_call[r["id"]]
        series.extend([None] * (round_ - len(series)))
        series.append(b["seconds"] / calls)
        u = self.usage[r["id"]]
        u["wall"] += b["wall_s"]
        if b["cpu_s"] is not None:
            u["cpu"] += b["cpu_s"]
            u["wait"] += b["wait_s"]
        if before and after:  # the harness's own reading costs are in here too: small next to a block
            u["others"] += max(after[0] - before[0] - (b["cpu_s"] or 0.0), 0.0)
            u["steal"] += after[1] - before[1]
        return b["wall_s"]

    def _measurement(self, r: dict) -> Measurement:
        return Measurement(self.per_call[r["id"]], self.starts)

    def _this_process(self, r: dict) -> Measurement:
        """The row's blocks in the current process, which decide when it stops."""
        return Measurement(self.per_call[r["id"]][self.starts[-1]:])

    def _still_needed(self, active: list[dict]) -> list[dict]:
        refs = [r for r in active if label(r) in self.refs]
        others = [r for r in active if label(r) not in self.refs]
        keep = []
        for r in others:
            if not refs:  # nothing to pair with: its own median must be known
                if self._this_process(r).width > self.s.precision:
                    keep.append(r)
                continue
            ratios = [self._this_process(r).ratio_to(self._this_process(ref)) for ref in refs]
            if any(x is None or x.width > self.s.precision for x in ratios):
                keep.append(r)
        if keep:
            return keep + refs
        return [r for r in refs if not others and self._this_process(r).width > self.s.precision]

    def _finish(self, r: dict) -> None:
        r.update(self._measurement(r).fields())
        r["calls_per_block"] = self.calls[r["id"]]
        r["compile_s"] = max(r["first_call_s"] - r["median_s"], 0.0)  # what the first call cost beyond a call
        u = self.usage[r["id"]]
        wall = u["wall"] or float("nan")
        r["cpu_threads"] = u["cpu"] / wall if u["cpu"] else None  # the threads it really kept busy
        r["wait_share"] = u["wait"] / wall
        r["others_cpus"] = u["others"] / wall  # CPUs' worth of other processes during its blocks
        r["steal_share"] = u["steal"] / wall
        r["calibration_drift"] = _drift(self.calibration)
        r["cpu_swing"] = swing(self.calibration)
        r["unsteady"] = r["cpu_swing"] > UNSTEADY
        free = threads.available() - r["others_cpus"]  # the CPUs the other processes left it
        why = [f"other processes took {r['others_cpus']:.2f} CPUs, leaving {free:.2f} for its {r['threads']} "
               "thread(s)"] if free < r["threads"] - SLACK else []
        if r["steal_share"] > CONTENDED:
            why.append(f"the hypervisor took {100 * r['steal_share']:.0f}%")
        r["contended"] = bool(why)
        r["contention"] = "; ".join(why)
