"""The runner: every case through every backend, device and mode, one record per check.

A record is a plain dict (what results.json holds) keyed by its id,
`<backend>-<device>-<mode>-<dtype>-<family>/<case>`, and its check (`value`, `grad` or `error`).
Backends run in their worker processes (conformance.worker), several backends at a time; a crash
or a hang costs the case it happened on, never the run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cache, compare, spec
from .caseio import Case
from .deviations import Deviations
from .record import FAILING
from .worker import Worker, WorkerDied, pack, unpack

# a shard or a helper costs a worker start, a framework import and its first compile: a lane gets
# another worker only for work expected to take this long
MIN_SHARD_SECONDS = 60.0
HELPER_POLL_S = 0.2  # how often a job with nothing to start looks for a lane worth helping
CRASH_LIMIT = 8  # crashes in a row, all alike, after which a backend's device and mode get fewer requests
PROBE = 16  # ... one in this many, until one is answered


def record_id(backend: str, device: str, mode: str, case: Case) -> str:
    return f"{backend}-{device}-{mode}-{case.dtype}-{case.id}"


def checks_of(case: Case, ours: bool = False) -> tuple:
    """The checks a case gets: 'error' for an invalid call, else 'value' and 'grad', and for our own
    implementations and checked kernels 'fd' (central differences) where the case suits it."""
    if case.error:
        return ("error",)
    return ("value", "grad", "fd") if ours and compare.fd_steps(case) is not None else ("value", "grad")


def clauses_for(case: Case, check: str) -> list[str]:
    """The clauses a check's verdict speaks for: gradient clauses for 'grad', the rest for 'value'."""
    grad_clauses = [c for c in case.clauses if spec.section(c) == "MML-8"]
    if check in ("grad", "fd"):
        return grad_clauses or ["MML-8.1"]
    if check == "value":
        return [c for c in case.clauses if spec.section(c) != "MML-8"] or ["MML-2.1"]
    return list(case.clauses)


def call_for(case: Case, grad: bool):
    """The call a backend receives for a case: arrays in the case's dtypes (impls.base.Call)."""
    from impls.base import Call, numpy_dtype

    dt = numpy_dtype(case.dtype)
    cot = None
    if grad:
        cot = case.cotangent if case.cotangent is not None else np.ones(case.problem().out_shape)
        cot = np.asarray(cot).astype(dt)
    return Call(x=case.x.astype(dt), target=np.asarray(case.target).astype(case.target_dtype), p=case.p,
                margin=case.margin, weight=None if case.weight is None else case.weight.astype(dt),
                reduction=case.reduction, legacy=case.legacy, cotangent=cot, noncontiguous=case.noncontiguous)


def request_for(case: Case, device: str, mode: str, grad: bool) -> dict:
    """The worker request for one case, its arrays packed bit for bit."""
    call = call_for(case, grad)
    arrays = call.arrays()
    if call.cotangent is not None:
        arrays["cotangent"] = call.cotangent
    return {"op": "run", "device": device, "mode": mode, "grad": grad, "p": call.p, "margin": call.margin,
            "reduction": call.reduction, "legacy": call.legacy, "noncontiguous": list(call.noncontiguous),
            "arrays": {k: pack(v) for k, v in arrays.items()}}


def _private_log_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="mmconf-logs-"))  # mode 0700, a fresh name


class Session:
    """The worker processes of one run, started on first use, one lock each."""

    def __init__(self, timeout: float = 120.0, log_dir: Path | None = None, python: str | None = None,
                 env: dict | None = None):
        # one private directory for the workers' logs, never a fixed name in a shared one; one the
        # session made itself goes when it closes (a crash's record holds its log's last lines)
        self.timeout, self.log_dir = timeout, log_dir or _private_log_dir()
        self._own_log_dir = log_dir is None
        self.python, self.env = python, cache.worker_env(env)  # another environment's (mmconf matrix)
        self._workers: dict[tuple, Worker] = {}  # (backend, lane name): a lane's worker
        self._locks: dict[tuple, threading.Lock] = {}
        self._descriptions: dict[str, dict] = {}
        self._adapters: dict = {}
        self._crashes: dict[tuple, tuple[str, int]] = {}  # (backend, device, mode) -> how, crashes in a row
        self._guard = threading.Lock()
        self.timings = Timings()

    def worker(self, backend: str, lane: str | None = None) -> tuple[Worker, threading.Lock]:
        """The worker of one of a backend's lanes (Lane.name; lanes run in parallel), or with no
        lane the one that describes the backend, which then serves the first lane asked for."""
        key = (backend, lane)
        with self._guard:
            if key not in self._workers:
                spare = (backend, None)
                if lane is not None and spare in self._workers:
                    self._workers[key], self._locks[key] = self._workers.pop(spare), self._locks.pop(spare)
                else:
                    if self._own_log_dir and not self.log_dir.is_dir():  # closed before: a new one
                        self.log_dir = _private_log_dir()
                    log_dir = self.log_dir if lane is None else self.log_dir / lane.replace("/", "-")
                    self._workers[key] = Worker(backend, timeout=self.timeout, log_dir=log_dir, env=self.env,
                                                python=self.python)
                    self._locks[key] = threading.Lock()
            return self._workers[key], self._locks[key]

    def describe(self, backend: str) -> dict:
        """The backend's self-description, or {'missing': reason} when it cannot be loaded."""
        if backend not in self._descriptions:
            w, lock = self.worker(backend)
            with lock:
                start_s = w.start_seconds
                try:
                    d = w.request({"op": "describe"})
                except WorkerDied as e:
                    d = {"missing": f"worker {e.kind} while loading: {e.detail}"}
                d.pop("worker_s", None)
                self.timings.add((backend, None, None), "start", w.start_seconds - start_s)
            self._descriptions[backend] = d
        return self._descriptions[backend]

    def ask(self, backend: str, req: dict, lane: str | None = None) -> dict:
        """The worker's reply, or {'died': kind, 'detail': ...}. After CRASH_LIMIT crashes in a row
        of one backend, device and mode, all the same way (a kernel that segfaults on every call),
        only every PROBE-th request is sent until one gets an answer: each crash costs a worker
        restart and a fresh framework import, seconds, for the same answer. The others are
        recorded as crashes, saying they were not run. `lane` names the worker (default: the
        mode's own lane)."""
        w, lock = self.worker(backend, lane or Lane(backend, (req["mode"],)).name)
        where = (backend, req.get("device"), req.get("mode"))
        with lock:
            how, count = self._crashes.get(where, ("", 0))
            if count >= CRASH_LIMIT and (count - CRASH_LIMIT) % PROBE:
                self._crashes[where] = (how, count + 1)
                return {"died": "crash", "detail": f"not run: the worker crashed on {CRASH_LIMIT} requests in a "
                        f"row here, every time the same way ({how}); one request in {PROBE} is still sent"}
            started, start_s = time.perf_counter(), w.start_seconds
            try:
                reply = w.request(req)
            except WorkerDied as e:
                reply = {"died": e.kind, "detail": e.detail}
            self.timings.add_request(where, time.perf_counter() - started, w.start_seconds - start_s,
                                     reply.pop("seconds", {}), reply.pop("worker_s", None))
            if reply.get("died") == "crash":
                first = reply["detail"].split(";")[0]  # how it died, without the stderr tail
                self._crashes[where] = (first, count + 1 if first == how else 1)
            else:
                self._crashes.pop(where, None)
            return reply

    def run_case(self, backend: str, device: str, mode: str, case: Case, lane: str | None = None) -> list[dict]:
        """Every check of one case on one backend/device/mode, as records; failing records carry
        a repro in the backend's own framework. `lane` names the worker (default: the mode's own)."""
        records = self._run_case(backend, device, mode, case, lane)
        started = time.perf_counter()
        for r in records:
            if r["verdict"] in FAILING:
                r["repro"] = self.repro(backend, device, mode, case, r["check"])
        self.timings.add((backend, device, mode), "repro", time.perf_counter() - started)
        self.timings.add((backend, device, mode), "cases", 1)
        return records

    def repro(self, backend: str, device: str, mode: str, case: Case, check: str) -> str:
        from impls.base import literals

        from .worker import make_backend

        if backend not in self._adapters:
            self._adapters[backend] = make_backend(backend)  # framework-free until load()
        try:
            code = self._adapters[backend].repro(literals(call_for(case, check == "grad")), device, mode, check)
        except Exception as e:  # a repro is a courtesy; never let it cost the record
            return f"# no repro: {type(e).__name__}: {e}"
        if "np." in code and "import numpy as np" not in code:  # literals of empty arrays use numpy
            code = "import numpy as np\n" + code
        return code

    def _run_case(self, backend: str, device: str, mode: str, case: Case, lane: str | None) -> list[dict]:
        desc = self.describe(backend)
        base = {"id": record_id(backend, device, mode, case), "case": case.id, "family": case.family,
                "backend": backend, "device": device, "mode": mode, "dtype": case.dtype}

        def rec(check: str, **fields) -> dict:
            return {**base, "check": check, "clauses": clauses_for(case, check), **fields}

        def verdict(reply: dict, judge, expect_raise: bool = False) -> dict:
            started = time.perf_counter()
            try:
                return _verdict_or(reply, judge, expect_raise)
            finally:
                self.timings.add((backend, device, mode), "judge", time.perf_counter() - started)

        if case.dtype not in desc["dtypes"].get(device, []):
            return [rec(c, verdict="unsupported", detail=f"{case.dtype} on {device} is not supported "
                        "(declared by the adapter)") for c in checks_of(case, desc["ours"])]
        if case.error:
            reply = self.ask(backend, request_for(case, device, mode, grad=False), lane)
            judge = lambda: compare.judge_error(case, reply, traced=mode in desc["traced_modes"])  # noqa: E731
            return [rec("error", **verdict(reply, judge, expect_raise=True))]
        reply = self.ask(backend, request_for(case, device, mode, grad=True), lane)
        forward = reply
        if "raised" in reply or "died" in reply:
            # the backward pass may be what failed, crashed or is missing: judge the forward alone
            forward = self.ask(backend, request_for(case, device, mode, grad=False), lane)
        value = verdict(forward, lambda: compare.judge_value(case, unpack(forward["value"])))
        grad = verdict(reply, lambda: compare.judge_grad(case, unpack(reply["grad"])))
        records = [rec("value", **value), rec("grad", **grad)]
        capture = reply.get("capture", forward.get("capture"))
        if capture is not None:  # the graph breaks the compiler met so far
            for r in records:
                r["capture"] = capture
        if "fd" in checks_of(case, desc["ours"]):
            steps = compare.fd_steps(case)
            fd = self.ask(backend, {**request_for(case, device, mode, grad=True), "op": "fd", "steps": pack(steps)},
                          lane)
            records.append(rec("fd", **verdict(fd, lambda: compare.judge_fd(case, unpack(fd["fd"]), steps))))
        return records

    def close(self, backend: str | None = None, lane: str | None = None) -> None:
        """Close every worker (the session starts new ones if used again), or the one of a
        backend's lane."""
        for (b, name), w in list(self._workers.items()):
            if backend is None or (b, name) == (backend, lane):
                w.close()
        if backend is None:
            self._workers.clear()
            if self._own_log_dir:
                shutil.rmtree(self.log_dir, ignore_errors=True)


class Timings:
    """Where a run's seconds went, per (backend, device, mode) and part (PARTS), summed over its
    requests; a backend's load before it had a device and mode is (backend, None, None)."""

    PARTS = {
        "start": "starting worker processes and importing the framework",
        "first_call": "calls of a configuration (shapes, dtypes, options) new to the worker: tracing "
                      "and compiling, where the framework does either",
        "call": "calls of a configuration the worker had run before",
        "fd": "finite differences (many calls)",
        "pipe": "the rest of each request's round trip: arrays packed, sent and unpacked",
        "judge": "judging the results against the reference",
        "repro": "writing repros of failures",
    }
    COUNTS = ("cases", "workers")  # cases run, and worker processes that ran them (a lane's helpers too)

    def __init__(self):
        self.seconds: dict[tuple, dict[str, float]] = {}
        self._lock = threading.Lock()

    def add(self, where: tuple, part: str, amount: float) -> None:
        with self._lock:
            row = self.seconds.setdefault(where, {})
            row[part] = row.get(part, 0.0) + amount

    def add_request(self, where: tuple, round_trip: float, start: float, parts: dict, worker_s) -> None:
        for part, amount in parts.items():
            self.add(where, part, amount)
        self.add(where, "start", start)
        # the worker's own clock, where it answered, leaves the pipe's share
        inside = worker_s if worker_s is not None else sum(parts.values())
        self.add(where, "pipe", max(0.0, round_trip - start - inside) + max(0.0, inside - sum(parts.values())))

    def table(self) -> list[dict]:
        """One row per (backend, device, mode), a backend's load folded into its first mode's row."""
        rows: dict[tuple, dict] = {}
        loads = {w[0]: s for w, s in self.seconds.items() if w[1] is None}
        for where, parts in sorted((w, s) for w, s in self.seconds.items() if w[1] is not None):
            row = {"backend": where[0], "device": where[1], "mode": where[2], **{p: 0.0 for p in self.PARTS},
                   **dict.fromkeys(self.COUNTS, 0)}
            for part, amount in parts.items():
                row[part] += amount
            if where[0] in loads:
                row["start"] += loads.pop(where[0]).get("start", 0.0)
            rows[where] = row
        for backend, parts in loads.items():  # a backend that never ran a case
            rows[(backend, "", "")] = {"backend": backend, "device": "", "mode": "", **dict.fromkeys(self.COUNTS, 0),
                                       **{p: parts.get(p, 0.0) for p in self.PARTS}}
        return [{k: round(v, 3) if k in self.PARTS else int(v) if k in self.COUNTS else v for k, v in r.items()}
                for r in rows.values()]


def _verdict_or(reply: dict, judge, expect_raise: bool = False) -> dict:
    """The judge's verdict, or what the reply says instead: a crash, a timeout, a capability gap,
    an exception where a result was due, or a modified argument (MML-1.7)."""
    if "died" in reply:
        return {"verdict": reply["died"], "detail": reply["detail"]}
    if "protocol_error" in reply:
        return {"verdict": "fail", "detail": f"the worker could not run the case: {reply['protocol_error']}"}
    if reply.get("unsupported"):
        return {"verdict": "unsupported", "detail": reply["unsupported"], "raised": reply["raised"]}
    if "raised" in reply and not expect_raise:
        r = reply["raised"]
        return {"verdict": "fail", "detail": f"raised {r['type']}: {r['message'][:300]}", "raised": r}
    out = judge()
    if reply.get("mutated"):
        out.update(verdict="fail", mutated=reply["mutated"],
                   detail=f"modified its argument(s) {', '.join(reply['mutated'])} (MML-1.7)")
    return out


# --- a whole run ----------------------------------------------------------------------------------


def environment() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }


def plan(desc: dict, cases: list[Case], devices=None, modes=None) -> list[tuple[str, str, Case]]:
    """The (device, mode, case) triples a backend runs: the filters intersect its own lists."""
    return [(d, m, c) for d in desc["devices"] if not devices or d in devices
            for m in desc["modes"] if not modes or m in modes for c in cases]


def run(backends: list[str], cases: list[Case], devices=None, modes=None, jobs: int | None = None,
        timeout: float = 120.0, log_dir: Path | None = None, progress=None, journal: Path | None = None,
        resume: bool = False, whole_store: bool = True, python: str | None = None, env: dict | None = None) -> dict:
    """Run and judge; returns the results document (what results.json holds).

    With a `journal`, every finished case's records are appended to it, one JSON line per case, as
    the run goes, under a lock that keeps a second run off it; `resume` first takes what the
    journal of an interrupted run holds for this run's backends, devices, modes and cases, and
    skips it. Stale deviation entries are looked for only when the run had the `whole_store` of
    golden cases. `python` and `env` run the workers in another environment (mmconf matrix).
    """
    deviations = Deviations.load()  # a broken deviation file stops the run before it starts
    jobs = jobs or os.cpu_count() or 1
    records: list[dict] = []
    sink = None
    if journal:
        sink = _open_journal(journal)
        tasks = _read_journal(sink) if resume else []
        selected = {(c.id, c.dtype) for c in cases}
        tasks = [t for t in tasks if t[0]["backend"] in backends and (t[0]["case"], t[0]["dtype"]) in selected
                 and (not devices or t[0]["device"] in devices) and (not modes or t[0]["mode"] in modes)]
        # what is kept, and nothing torn: what this run appends must not follow a torn line
        sink.seek(0)
        sink.truncate()
        for task in tasks:
            _write_task(sink, task)
            records.extend(task)
    done = {_task_key(r) for r in records}
    started = time.perf_counter()
    session = Session(timeout=timeout, log_dir=log_dir, python=python, env=env)
    lock = threading.Lock()
    lane_seconds: dict[str, float] = {}
    descriptions: dict[str, dict] = {}
    queues: list[_LaneQueue] = []

    def take() -> tuple[_LaneQueue, str] | None:
        """A lane not started yet, the longest first; once all are, the lane with the most work
        left, if a helper would pay for its start; None when no work is left to take."""
        while True:
            with lock:
                for q in queues:
                    if not q.workers:
                        return q, q.join()
                left = [q for q in queues if q.units]
                if not left:
                    return None
                q = max(left, key=_LaneQueue.seconds_left)
                if q.seconds_left() > MIN_SHARD_SECONDS:
                    return q, q.join()
            time.sleep(HELPER_POLL_S)

    def serve() -> None:
        """One job: lanes in turn, each in a worker process of its own, until no work is left."""
        while (taken := take()) is not None:
            q, worker = taken
            began, seen = time.perf_counter(), set()
            while (unit := q.next_unit(lock)) is not None:
                for device, mode, case in unit:
                    if (device, mode) not in seen:  # a worker of this row: the timings count them
                        seen.add((device, mode))
                        session.timings.add((q.lane.backend, device, mode), "workers", 1)
                    if (q.lane.backend, device, mode, case.dtype, case.id) not in done:
                        out = session.run_case(q.lane.backend, device, mode, case, worker)
                        with lock:
                            records.extend(out)
                            if sink:
                                _write_task(sink, out)
                    with lock:
                        q.done += 1
                        if progress:
                            progress(q.lane.whole, q.done, q.total)
            session.close(q.lane.backend, worker)
            with lock:  # a lane's workers add up
                lane_seconds[q.lane.whole] = lane_seconds.get(q.lane.whole, 0.0) + time.perf_counter() - began

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            descriptions = dict(zip(backends, pool.map(session.describe, backends)))
            queues += [_LaneQueue(lane, descriptions[lane.backend], cases, devices)
                       for lane in longest_first(descriptions, modes)]
            for f in [pool.submit(serve) for _ in range(jobs)]:
                f.result()
    finally:
        session.close()
        if sink:
            sink.close()
    if whole_store and not python:  # a selection's, or another environment's, would misorder the next run
        cache.save_lane_seconds(lane_seconds)
    records.sort(key=lambda r: (r["backend"], r["device"], r["mode"], r["dtype"], r["case"], r["check"]))
    by_key = {(c.id, c.dtype): c for c in cases}
    deviations.annotate(records, by_key)
    return {
        "environment": environment(),
        "backends": {b: descriptions.get(b, {"missing": "not run"}) for b in backends},
        "timings": {"wall_s": round(time.perf_counter() - started, 3), "jobs": jobs,
                    "rows": session.timings.table()},
        "records": records,
        "stale_deviations": [{**vars(e), "label": e.label} for e in deviations.stale(records, by_key)]
        if whole_store else [],
    }


def alike(case: Case) -> tuple:
    """What a compiler specialises a function on besides sizes: alike cases run in one worker,
    where a compiler of dynamic shapes (torch.compile's) compiles once for all of them."""
    return (case.dtype, case.p, case.reduction, case.weight is None, repr(case.legacy), bool(case.error),
            np.ndim(case.x), case.noncontiguous)


def groups(cases: list[Case]) -> list[list[Case]]:
    """The cases in groups of alike ones, in the order each group first appears."""
    out: dict[tuple, list[Case]] = {}
    for c in cases:
        out.setdefault(alike(c), []).append(c)
    return list(out.values())


def deal(cases: list[Case], n: int) -> list[list[Case]]:
    """The cases in n shards of near-equal size, alike cases together, each in the cases' order."""
    load, shard_of = [0] * n, {}
    for g in sorted(groups(cases), key=len, reverse=True):
        k = load.index(min(load))
        load[k] += len(g)
        shard_of.update((id(c), k) for c in g)
    return [[c for c in cases if shard_of[id(c)] == k] for k in range(n)]


@dataclass(frozen=True)
class Lane:
    """What one worker process runs: a backend's modes, each case through all of them in turn
    (modes that share work, such as TensorFlow's function and xla, which compiles the function
    mode's trace), and of a lane split into shards, the `shard`-th of deal(cases, shards)."""

    backend: str
    modes: tuple
    shard: int = 0
    shards: int = 1

    @property
    def whole(self) -> str:
        """The lane's name before sharding: 'tensorflow/function+xla'."""
        return f"{self.backend}/{'+'.join(self.modes)}"

    @property
    def name(self) -> str:
        return self.whole if self.shards == 1 else f"{self.whole}#{self.shard + 1}of{self.shards}"

    def work(self, desc: dict, cases: list[Case], devices=None) -> list[tuple[str, str, Case]]:
        """The (device, mode, case) triples this lane runs, in order."""
        mine = cases if self.shards == 1 else deal(cases, self.shards)[self.shard]
        return [(d, m, c) for d in desc["devices"] if not devices or d in devices for c in mine for m in self.modes]


class _LaneQueue:
    """A lane's work in `mmconf run`, as units that its workers take in turn: a group of alike
    cases (on every device and mode of the lane). Its first worker starts it; a job with no lane
    left to start joins it as a helper, in a worker of its own, while its work left is long."""

    def __init__(self, lane: Lane, desc: dict, cases: list[Case], devices=None):
        self.lane = lane
        self.units = deque(u for g in groups(cases) if (u := lane.work(desc, g, devices)))
        self.total, self.done, self.workers, self.started = sum(map(len, self.units)), 0, 0, 0.0

    def join(self) -> str:
        """A new worker's name: the lane's for the first, then 'lane#2', ..."""
        self.workers += 1
        if self.workers == 1:
            self.started = time.perf_counter()
            return self.lane.name
        return f"{self.lane.whole}#{self.workers}"

    def next_unit(self, lock: threading.Lock) -> list | None:
        with lock:
            return self.units.popleft() if self.units else None

    def seconds_left(self) -> float:
        """The queued work's expected seconds at the lane's pace so far; 0 until a case is done."""
        if not self.done:
            return 0.0
        return (time.perf_counter() - self.started) / self.done * sum(map(len, self.units))


def longest_first(descriptions: dict, modes=None, jobs: int = 1) -> list[Lane]:
    """The lanes of the described backends, `modes` only where given: each mode alone, but the
    modes a backend shares work between (`shared_lane`) together. For a plan fixed in advance (pytest's
    lanes, each on one xdist worker), a lane that took more than its share of the last run (its
    seconds over all lanes' seconds / `jobs`) is split into shards of at least MIN_SHARD_SECONDS;
    `mmconf run` asks for none (jobs=1): its idle jobs help the longest lane instead. The longest
    first, so that none is left to run alone at the end: by the last run's durations, and before
    any are known, the traced modes (which compile every case)."""
    lanes = []
    for backend, d in descriptions.items():
        if "missing" in d:
            continue
        chosen = [m for m in d["modes"] if not modes or m in modes]
        shared = tuple(m for m in chosen if m in d.get("shared_lane", ()))
        if len(shared) < 2:
            shared = ()
        lanes += ([Lane(backend, shared)] if shared else []) + [Lane(backend, (m,)) for m in chosen if m not in shared]
    last = cache.lane_seconds()
    total = sum(last.get(lane.whole, 0.0) for lane in lanes)
    sharded = []
    for lane in lanes:
        seconds = last.get(lane.whole, 0.0)
        shards = max(1, min(jobs, math.ceil(seconds * jobs / total), int(seconds // MIN_SHARD_SECONDS))) if total else 1
        sharded += [Lane(lane.backend, lane.modes, k, shards) for k in range(shards)]

    def order(lane: Lane):
        traced = any(m in descriptions[lane.backend]["traced_modes"] for m in lane.modes)
        return lane.whole in last, -last.get(lane.whole, 0.0) / lane.shards, not traced

    return sorted(sharded, key=order)


def _task_key(r: dict) -> tuple:
    return r["backend"], r["device"], r["mode"], r["dtype"], r["case"]


def _json_default(v):
    return float(v) if isinstance(v, np.floating) else str(v)


class JournalBusy(RuntimeError):
    """Another run is writing the same journal."""


def _open_journal(path: Path):
    """The journal, opened without truncating and locked: a second run into the same place would
    interleave its records with ours and delete the journal when done."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise JournalBusy(f"another mmconf run is writing {path}: wait for it, or give another --out") from None
    return f


def _write_task(sink, records: list[dict]) -> None:
    """One case's records, one line: a line torn by a crash holds one whole case's records, or none."""
    if records:
        sink.write(json.dumps(records, default=_json_default) + "\n")
        sink.flush()


def _read_journal(f) -> list[list[dict]]:
    """Each finished case's records in an interrupted run's journal, up to a torn line."""
    f.seek(0)
    tasks = []
    for line in f.read().splitlines():
        try:
            task = json.loads(line)
        except ValueError:
            break
        if not (isinstance(task, list) and task and all(isinstance(r, dict) for r in task)):
            break  # a journal of another format
        tasks.append(task)
    return tasks
