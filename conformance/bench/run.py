"""Running a benchmark: a pytest-benchmark session per backend, one after another, and the records
(what bench.json holds) with roofline figures and ratios to the baseline backend.

Each session is a subprocess (`pytest conformance/bench/session.py`) with the thread settings in
its environment before anything is imported. The harness follows the session's event file for
progress and for a row that hangs (killed after `timeout` seconds) or crashes the process; either
costs that row, and a fresh session runs the rows that have no timings yet.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import compare, grid, machine, threads
from .measurement import NOISY, Measurement

SESSION = Path(__file__).with_name("session.py")
TIMING_FIELDS = ("median_s", "iqr_s", "q1_s", "q3_s", "min_s", "mean_s", "rounds", "iterations")


@dataclass
class Settings:
    sizes: list = field(default_factory=lambda: list(grid.SIZES))
    dtypes: list = field(default_factory=lambda: ["float32"])
    passes: list = field(default_factory=lambda: list(grid.PASSES))
    devices: list | None = None  # None: every device a backend has
    modes: list | None = None  # None: every mode (first_mode_only: the first, and the baseline's)
    first_mode_only: bool = False
    threads: int = field(default_factory=threads.available)
    budget_s: float = 1.0  # measured time per row
    min_rounds: int = 7
    max_rounds: int = 2000
    min_round_s: float = 2e-4
    noisy: float = NOISY
    baseline: str = "torch/eager"
    timeout: float = 600.0  # seconds one row may take, compilation included

    def timer(self) -> dict:
        return {"budget_s": self.budget_s, "min_rounds": self.min_rounds, "max_rounds": self.max_rounds,
                "min_round_s": self.min_round_s}


def run(backends: list[str], settings: Settings, work_dir: Path, progress=None) -> dict:
    """Every backend's rows; returns the bench document."""
    work_dir.mkdir(parents=True, exist_ok=True)
    llc = machine.llc_bytes()
    env = environment(settings.threads, llc)
    env["bandwidth"] = {"cpu": machine.cpu_bandwidth(settings.threads, llc)}  # before the sessions load the CPUs
    descriptions, records = {}, []
    for spec in backends:
        desc, recs = Backend(spec, settings, work_dir, progress).run()
        descriptions[spec] = desc
        records.extend(recs)
    for device in sorted({r["device"] for r in records if r["status"] == "ok"} - {"cpu"}):
        env["bandwidth"][device] = machine.device_bandwidth(device, _session_env(settings.threads))
    env["versions"] = {b: d.get("version") for b, d in descriptions.items() if "missing" not in d}
    env["thread_controls"] = {b: d.pop("thread_controls") for b, d in descriptions.items() if "thread_controls" in d}
    for r in records:
        _roofline(r, env["bandwidth"], settings.noisy)
        r["machine"] = env["machine"]
    found = compare.add_ratios(records, settings.baseline)
    return {"kind": "mmconf-bench", "format": 1, "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "environment": env, "settings": {**asdict(settings), "call": grid.CALL},
            "baseline": settings.baseline, "baseline_found": found, "backends": descriptions, "records": records}


def environment(n: int, llc: int | None) -> dict:
    from ..runner import environment as base

    env = base()
    env.update(machine=platform.node(), threads=n, cpus_available=threads.available(), llc_bytes=llc)
    try:
        from importlib.metadata import version

        env["pytest_benchmark"] = version("pytest-benchmark")
    except Exception:
        pass
    return env


def _roofline(r: dict, bandwidth: dict, noisy: float) -> None:
    r["bytes"] = grid.bytes_moved(r["N"], r["C"], r["dtype"], r["pass"])
    r["gbps"] = r["pct_bandwidth"] = r["noisy"] = None
    if r["status"] != "ok":
        return
    r["gbps"] = r["bytes"] / r["median_s"] / 1e9
    bw = (bandwidth.get(r["device"]) or bandwidth.get(r["device"].split(":")[0]) or {}).get("gbps")
    r["pct_bandwidth"] = 100 * r["gbps"] / bw if bw else None
    r["noisy"] = r["iqr_s"] > noisy * r["median_s"]


def _session_env(n: int) -> dict:
    """The environment of a session: the thread settings, and none of an enclosing pytest's variables
    (under xdist, pytest-benchmark would turn itself off)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return {**env, **threads.environment(n), "PYTHONUNBUFFERED": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


class Backend:
    """One backend's rows, through as many sessions as crashes and hangs make necessary."""

    def __init__(self, spec: str, settings: Settings, work_dir: Path, progress=None):
        self.spec, self.settings, self.work_dir, self.progress = spec, settings, work_dir, progress
        self.slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in spec)
        self.rows: dict[str, dict] = {}  # id -> row, as the sessions planned them
        self.final: dict[str, dict] = {}  # id -> the row's last 'end' event (or crash, timeout)
        self.stats: dict[str, dict] = {}  # id -> pytest-benchmark entry
        self.desc: dict = {}

    def run(self) -> tuple[dict, list[dict]]:
        attempt = 0
        while True:
            attempt += 1
            broken, detail = self._session(attempt)
            if not self.desc:  # the session died before it could plan: a broken install, say
                self.desc = {"missing": detail}
            if "missing" in self.desc:
                return self.desc, []
            for rid in [rid for rid, e in self.final.items() if e["status"] == "ok" and rid not in self.stats]:
                del self.final[rid]  # its timings died with the session: measure it again
            left = [rid for rid in self.rows if rid not in self.final]
            if not left:
                break
            if broken is None:  # died outside any row (loading, teardown): the rest cannot run
                for rid in left:
                    self.final[rid] = {"status": "crash", "detail": detail}
                break
        return self.desc, [self._record(rid) for rid in self.rows]

    def _session(self, attempt: int) -> tuple[str | None, str]:
        """Run one session; returns the row it broke on (None if none) and how it ended."""
        stem = self.work_dir / f"{self.slug}.{attempt}"
        events_path, json_path, plan_path, log_path = (
            Path(f"{stem}.{x}") for x in ("events.jsonl", "benchmark.json", "plan.json", "log"))
        for p in (events_path, json_path):
            p.unlink(missing_ok=True)
        s = self.settings
        modes = s.modes or (self._first_modes() if s.first_mode_only else None)
        plan = {"backend": self.spec, "sizes": s.sizes, "dtypes": s.dtypes, "passes": s.passes, "devices": s.devices,
                "modes": modes, "threads": s.threads, "timer": s.timer(), "skip": sorted(self.final)}
        plan_path.write_text(json.dumps(plan))
        ini = self.work_dir / "pytest.ini"
        ini.write_text("[pytest]\n")  # the session ignores the project's pytest settings
        cmd = [sys.executable, "-m", "pytest", str(SESSION), "-c", str(ini), "--rootdir", str(self.work_dir),
               "-p", "no:cacheprovider", "-p", "pytest_benchmark.plugin", "-q", "-rN",
               "--benchmark-json", str(json_path), "--benchmark-disable-gc",
               "--benchmark-timer", "conformance.bench.timer.now"]
        env = {**_session_env(s.threads), "MMCONF_BENCH_PLAN": str(plan_path), "MMCONF_BENCH_EVENTS": str(events_path)}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            broken, how = self._follow(proc, events_path)
        finally:
            _kill(proc)
        rc = proc.returncode
        ended = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"status {rc}"
        for entry in _benchmarks(json_path):
            if entry["extra_info"].get("status") == "ok":
                self.stats[entry["extra_info"]["row"]] = entry
        if broken is not None:
            detail = (f"killed after {self.settings.timeout:g} s in this row" if how == "timeout"
                      else f"the session died ({ended}) in this row; its log: {log_path}")
            self.final[broken] = {"status": how, "detail": detail}
        return broken, f"the session ended ({ended}) outside any row: {_tail(log_path)} (log: {log_path})"

    def _follow(self, proc: subprocess.Popen, events_path: Path) -> tuple[str | None, str]:
        """Read the session's events as they come; kill it when a row (or loading) outlasts the timeout."""
        offset, current, since = 0, None, time.monotonic()
        while True:
            done = proc.poll() is not None
            if events_path.exists():
                with open(events_path, "rb") as f:
                    f.seek(offset)
                    lines = f.read().split(b"\n")
                offset += sum(len(line) + 1 for line in lines[:-1])  # a torn last line is read again
                for line in lines[:-1]:
                    current, since = self._event(json.loads(line), current, since)
            if done:
                return current, "crash"
            if time.monotonic() - since > self.settings.timeout:
                _kill(proc)
                return current, "timeout"
            time.sleep(0.05)

    def _event(self, e: dict, current, since):
        kind = e["event"]
        if kind == "missing":
            self.desc = {"missing": e["reason"]}
        elif kind == "plan":
            self.desc = {**e["describe"], "thread_controls": e["threads"]}
            self.rows.update((r["id"], r) for r in e["rows"])
        elif kind == "start":
            return e["id"], time.monotonic()
        elif kind == "end":
            self.final[e["id"]] = e
            if self.progress:
                self.progress(self.spec, len(self.final), len(self.rows))
            return None, time.monotonic()
        return current, since

    def _first_modes(self) -> list[str]:
        from ..worker import make_backend

        modes = make_backend(self.spec).modes  # a class attribute: nothing is imported
        base, _, mode = self.settings.baseline.partition("/")
        return sorted({modes[0], mode} if base == self.spec and mode in modes else {modes[0]})

    def _record(self, rid: str) -> dict:
        row, end = self.rows[rid], self.final[rid]
        rec = {"backend": self.spec, **{k: row[k] for k in ("mode", "device", "dtype", "N", "C", "pass")},
               "status": end["status"], "detail": end.get("detail", "")}
        rec.update(dict.fromkeys(TIMING_FIELDS))
        rec.update(first_call_s=None, compile_s=None, warmup_calls=None, peak_bytes=None, peak_kind=None, clock=None)
        if end["status"] == "ok":
            m = Measurement.from_benchmark(self.stats[rid])
            rec.update(m.fields())
            rec.update({k: end[k] for k in ("first_call_s", "warmup_calls", "peak_bytes", "peak_kind", "clock")})
            rec["compile_s"] = max(end["first_call_s"] - m.median, 0.0)  # what the first call cost beyond a call
        return rec


def _benchmarks(path: Path) -> list[dict]:
    """The entries of pytest-benchmark's JSON; none if the session died before writing it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))["benchmarks"]
    except (OSError, ValueError, KeyError):
        return []


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])[-400:]
    except OSError:
        return ""
