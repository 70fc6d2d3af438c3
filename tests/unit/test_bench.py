"""`mmconf bench`: the statistics and the gate's decision rule on synthetic timings, and the harness
end to end (well-formed output, merged machines, a crashing or hanging kernel, the gate on a
kernel slowed by real work). Nothing here asserts a speed of this machine: the slowdowns the end-to-end
gate checks are twenty-fold against a 50% threshold."""

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import report
from conformance.bench import grid, stats
from conformance.bench.compare import AgainstBefore, Compare, add_ratios
from conformance.bench.measurement import Measurement
from conformance.bench.timer import Timer

ROOT = Path(__file__).resolve().parents[2]
RECORD_KEYS = {"backend", "mode", "device", "dtype", "N", "C", "pass", "status", "median_s", "median_lo_s",
               "median_hi_s", "iqr_s", "blocks", "calls_per_block", "block_s", "ratio", "ratio_lo", "ratio_hi",
               "ratio_blocks", "threads", "cpu_threads", "wait_share", "others_cpus", "steal_share",
               "calibration_drift", "contended", "gbps", "pct_bandwidth", "pct_fresh", "compile_s", "bytes", "noisy",
               "peak_bytes", "machine", "process_starts", "ratio_processes", "cpu_swing", "unsteady"}
FAST = ["--budget", "0.02", "--block", "0.002", "--min-blocks", "6"]
MISSING = [m for m in ("matplotlib", "tabulate") if importlib.util.find_spec(m) is None]
needs_bench = pytest.mark.skipif(bool(MISSING), reason=f"the [bench] extra is not installed ({', '.join(MISSING)})")


def mmconf(*args, env=None):
    return subprocess.run([sys.executable, "-m", "conformance", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env)


# --- the pieces -----------------------------------------------------------------------------------


def test_sizes_and_bytes():
    assert grid.parse_sizes("32x10, 4096X1000") == [(32, 10), (4096, 1000)]
    for bad in ("32", "0x5", "axb", "3x-1"):
        with pytest.raises(ValueError, match="NxC"):
            grid.parse_sizes(bad)
    assert grid.bytes_moved(16384, 4096, "float32", "fwd") == 16384 * 4096 * 4
    assert grid.bytes_moved(10, 10, "bfloat16", "fwd+bwd") == 400


def test_the_size_beyond_the_cache_holds_four_times_the_measured_cache():
    assert grid.beyond_cache(32 << 20) == (16384, 4096)  # 256 MiB >= 128 MiB
    n, c = grid.beyond_cache(315_000_000)  # a 315 MB last-level cache: 16384 x 4096 would fit in it
    assert c == 4096 and n * c * 4 >= 4 * 315_000_000 > n // 2 * c * 4
    assert grid.default_sizes(32 << 20)[-1] == (16384, 4096)
    assert grid.why(16384, 4096, 32 << 20) == grid.BEYOND_CACHE and grid.why(16384, 4096, 315_000_000) == ""


def test_timer_blocks_time_their_calls_after_one_untimed_call():
    calls = []
    t = Timer(lambda: calls.append(1), warmup_s=0.0)
    t.first_call()
    assert len(calls) == 1 and t.first_call_s >= 0
    assert t.warm_up() >= 0 and t.warmup_calls >= 2
    before = len(calls)
    b = t.block(5)
    assert len(calls) - before == 6 and b["seconds"] >= 0 and b["wall_s"] >= b["seconds"] * 0.5
    assert b["cpu_s"] is None or b["cpu_s"] >= 0
    before = len(calls)
    t.block(1)
    assert len(calls) - before == 1  # a block of one call: nothing untimed


def test_calibration_times_every_cpu_and_leaves_the_affinity_as_it_was():
    from conformance.bench import machine, run

    before = os.sched_getaffinity(0)
    times = machine.calibrate()
    assert len(times) == len(before) and all(t > 0 for t in times) and os.sched_getaffinity(0) == before
    steady, switching = [[1.0, 1.01]] * 20, [[1.0, 1.7], [1.7, 1.0]] * 10
    assert run.swing(steady) < 0.02 and run.swing(switching) == pytest.approx(0.7)
    assert run._drift(switching) == 0.0 and run._drift([[1.0, 1.0]] * 5 + [[1.5, 1.5]] * 5) == pytest.approx(0.5)


# --- statistics -----------------------------------------------------------------------------------


def test_median_interval_uses_the_sign_test_ranks():
    xs = list(range(1, 21))
    assert stats.median_interval(xs[:5]) is None  # too few for 95%
    assert stats.median_interval(xs[:6]) == (1, 6)
    assert stats.median_interval(xs[:9]) == (2, 8)
    assert stats.median_interval(xs) == (6, 15)  # the tabulated ranks for n = 20
    assert stats.median_interval(list(range(100)))[0] == 39  # l = 40 for n = 100


def test_median_interval_covers_the_median_about_95_percent_of_the_time():
    rng = random.Random(7)
    for n in (9, 30, 200):
        misses = sum(not (lo <= 1.0 <= hi) for lo, hi in (
            stats.median_interval([rng.lognormvariate(0, 0.5) for _ in range(n)]) for _ in range(2000)))
        assert 0.005 < misses / 2000 < 0.06, (n, misses)


def test_ratio_pairs_blocks_of_the_same_round():
    a = Measurement([2.0, None, 4.0, 6.0])
    b = Measurement([1.0, 5.0, 2.0, None])
    r = a.ratio_to(b)
    assert r.estimate == 2.0 and r.pairs == 2 and r.interval is None  # too few pairs for an interval
    assert a.times == [2.0, 4.0, 6.0] and a.median == 4.0


@pytest.mark.parametrize("interval, verdict", [
    ((0.97, 1.04), stats.SAME), ((1.12, 1.3), stats.SLOWER), ((0.7, 0.88), stats.FASTER),
    ((1.05, 1.15), stats.INCONCLUSIVE), ((0.85, 1.2), stats.INCONCLUSIVE), (None, stats.INCONCLUSIVE),
])
def test_decide(interval, verdict):
    assert stats.decide(interval, 0.10) == verdict


# --- the gate on synthetic timings: rounds that share a drift, blocks with noise -----------------


def synthetic_run(slowdown=1.0, noise=0.02, rounds=40, seed=0, machine="m", contended=False, processes=(1.0,)):
    """A baseline and a kernel twice as slow (times `slowdown`), measured interleaved: each round's
    machine speed drifts by up to 30% (both rows alike), each block has its own lognormal noise.
    The rounds are shared out among worker processes, in each of which the kernel takes its
    `processes` factor longer."""
    rng = random.Random(seed)
    base, kern = [], []
    starts = [i * rounds // len(processes) for i in range(len(processes))]
    for i in range(rounds):
        drift = 1 + 0.3 * rng.random()
        factor = processes[sum(i >= s for s in starts) - 1]
        base.append(1e-3 * drift * rng.lognormvariate(0, noise))
        kern.append(2e-3 * slowdown * factor * drift * rng.lognormvariate(0, noise))
    records = []
    for backend, times in (("base", base), ("kern", kern)):
        m = Measurement(times, starts)
        records.append({"backend": backend, "mode": "eager", "device": "cpu", "dtype": "float32", "N": 64, "C": 100,
                        "pass": "fwd", "status": "ok", "machine": machine, "contended": contended,
                        **m.fields()})
    add_ratios(records, "base/eager")
    add_ratios(records, "base/eager", prefix="before_ratio")
    return {"baseline": "base/eager", "before": "base/eager", "records": records}


def verdicts(gate):
    return {c.row["backend"]: c.verdict for c in gate.changes}


def test_gate_passes_a_fixed_ratio_under_drift_and_noise():
    old = synthetic_run(seed=1)
    for seed in range(2, 22):  # 20 unchanged runs on another (3x slower) machine
        new = synthetic_run(seed=seed, machine="other")
        for r in new["records"]:
            r["median_s"] *= 3
        c = Compare(old, new, max_slowdown=0.1)
        assert verdicts(c) == {"base": "baseline", "kern": stats.SAME} and c.exit_status == 0, seed


def test_gate_fails_a_shifted_ratio():
    old = synthetic_run(seed=1)
    for seed in range(2, 22):
        c = Compare(old, synthetic_run(slowdown=1.25, seed=seed), max_slowdown=0.1)
        assert verdicts(c)["kern"] == stats.SLOWER and c.exit_status == 1 and c.failed
        assert c.changes[1].change == pytest.approx(0.25, abs=0.03)
    c = Compare(old, synthetic_run(slowdown=0.7, seed=3), max_slowdown=0.1)
    assert verdicts(c)["kern"] == stats.FASTER and c.exit_status == 0


def test_gate_is_inconclusive_on_a_too_noisy_run_and_under_contention():
    old = synthetic_run(seed=1)
    noisy = Compare(old, synthetic_run(slowdown=1.1, noise=0.4, rounds=9, seed=5), max_slowdown=0.1)
    assert verdicts(noisy)["kern"] == stats.INCONCLUSIVE and noisy.exit_status == 3
    busy = Compare(old, synthetic_run(slowdown=2.0, seed=5, contended=True), max_slowdown=0.1)
    assert verdicts(busy)["kern"] == stats.INCONCLUSIVE and "contention" in busy.changes[1].note


def test_a_speed_that_depends_on_the_process_widens_the_interval_instead_of_failing_the_gate():
    # one process per run: each run's interval is tight around its own process's speed, and an
    # unchanged kernel that drew a slow process fails the gate
    fast, slow = synthetic_run(seed=1, processes=(1.0,)), synthetic_run(seed=2, processes=(1.3,))
    assert verdicts(Compare(fast, slow, max_slowdown=0.1))["kern"] == stats.SLOWER
    # three processes per run: a run that drew both speeds covers both, and the gate cannot tell
    old = synthetic_run(seed=1, rounds=60, processes=(1.0, 1.0, 1.3))
    new = synthetic_run(seed=2, rounds=60, processes=(1.3, 1.3, 1.0))
    kern = next(r for r in new["records"] if r["backend"] == "kern")
    assert kern["ratio_lo"] < 2.05 and kern["ratio_hi"] > 2.5 and kern["process_starts"] == [0, 20, 40]
    assert [round(x, 1) for x in kern["ratio_processes"]] == [2.6, 2.6, 2.0]
    assert verdicts(Compare(old, new, max_slowdown=0.1))["kern"] == stats.INCONCLUSIVE
    # and a real slowdown still fails it when every process shows it
    steady = synthetic_run(seed=1, rounds=60, processes=(1.0, 1.0, 1.0))
    assert verdicts(Compare(steady, synthetic_run(1.25, seed=2, rounds=60, processes=(1.0,) * 3), 0.1))["kern"] \
        == stats.SLOWER


def test_an_interval_needs_enough_blocks_in_every_process():
    m = Measurement([1.0] * 10 + [2.0] * 5, [0, 10])
    assert m.interval is None and Measurement([1.0] * 10 + [2.0] * 6, [0, 10]).interval == (1.0, 2.0)


def test_gate_within_one_run_against_the_before_row():
    same = AgainstBefore(synthetic_run(slowdown=0.5, seed=4), max_slowdown=0.1)  # the kernel 'after' = base
    assert verdicts(same) == {"kern": stats.SAME} and same.exit_status == 0
    slower = AgainstBefore(synthetic_run(slowdown=0.5 * 1.25, seed=4), max_slowdown=0.1)
    assert verdicts(slower) == {"kern": stats.SLOWER} and slower.exit_status == 1


def test_rows_without_a_baseline_are_compared_only_when_asked():
    old, new = synthetic_run(seed=1), synthetic_run(seed=2, slowdown=2.0)
    for d in (old, new):
        d["baseline"] = "torch/eager"
        for r in d["records"]:
            r["ratio"] = r["ratio_lo"] = r["ratio_hi"] = None
    c = Compare(old, new, max_slowdown=0.1)
    assert verdicts(c) == {"base": "not comparable", "kern": "not comparable"} and c.exit_status == 0
    absolute = Compare(old, new, max_slowdown=0.1, absolute=True)
    assert verdicts(absolute)["kern"] == stats.SLOWER and absolute.changes[1].basis == "median"


def test_runs_of_a_machine_in_another_state_get_wider_intervals():
    """The host beside a VM can change between runs: where a copy bandwidth (or the calibration
    kernel) moved by a factor beyond SAME_STATE, the interval of every change is widened by it, so
    a 25% slowdown reads INCONCLUSIVE and a 2x one still SLOWER, and the note says why."""
    from conformance.bench.compare import machine_change

    def env(gbps, end=None, calibration=None):
        return {"bandwidth": {"cpu": {"gbps": gbps}}, "bandwidth_end": {"cpu": {"gbps": end or gbps}},
                "calibration_s": calibration}

    assert machine_change(env(27.4), env(28.8)) == (1.0, None)  # best-of-5 copies of one state differ by ~5%
    factor, note = machine_change(env(27.4), env(38.0))
    assert abs(factor - 38.0 / 27.4) < 1e-9 and "copy bandwidth at the start, GB/s 27.4 then 38" in note
    assert "at the end" in machine_change(env(27.4), env(27.4, end=38.0))[1]
    assert "calibration" in machine_change(env(27.4, calibration=1e-3), env(27.4, calibration=1.3e-3))[1]
    assert machine_change({}, env(38.0)) == (1.0, None)  # an older bench.json: nothing to judge by
    old = synthetic_run(seed=1)
    old["environment"] = env(27.4)
    for slowdown, same_state, moved in ((1.25, stats.SLOWER, stats.INCONCLUSIVE), (2.0, stats.SLOWER, stats.SLOWER)):
        new = synthetic_run(seed=2, slowdown=slowdown)
        new["environment"] = env(28.0)
        assert verdicts(Compare(old, new, max_slowdown=0.1))["kern"] == same_state
        new["environment"] = env(38.0)
        c = Compare(old, new, max_slowdown=0.1)
        assert verdicts(c)["kern"] == moved and "not in the same state" in c.changes[1].note


def test_missing_baseline_leaves_ratios_empty():
    records = synthetic_run()["records"]
    assert add_ratios(records, "torch/eager") is False and records[0]["ratio"] is None


# --- the command, end to end ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    r = mmconf("bench", "--backends", "numpy,check:numpy:tests.kernels.numpy_kernels:correct", "--baseline",
               "numpy/eager", "--sizes", "8x4,16x8", "--dtypes", "float32,float16", *FAST, "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@needs_bench
def test_tiny_run_writes_well_formed_output(tiny):
    d = json.loads((tiny / "bench.json").read_text())
    assert report.is_bench(d) and d["baseline_found"]
    env = d["environment"]
    assert env["cpu"] and env["threads"] >= 1 and env["bandwidth"]["cpu"]["gbps"] > 0 and "numpy" in env["versions"]
    assert len(d["records"]) == 2 * 2 * 2 * 2  # backends x dtypes x sizes x passes
    for r in d["records"]:
        assert RECORD_KEYS <= set(r), RECORD_KEYS - set(r)
        if r["backend"] == "numpy":
            assert r["status"] == "ok" and r["ratio"] == 1.0 and r["blocks"] >= 6 and len(r["block_s"]) >= 6
            assert 0 < r["q1_s"] <= r["median_s"] <= r["q3_s"] and r["gbps"] > 0 and r["compile_s"] >= 0
            assert r["median_lo_s"] <= r["median_s"] <= r["median_hi_s"] and r["cpu_threads"] > 0
        elif r["pass"] == "fwd":
            assert r["status"] == "ok" and r["ratio_lo"] <= r["ratio"] <= r["ratio_hi"] and r["ratio_blocks"] >= 6
        else:  # a NumPy kernel without a backward function: a capability gap, reported
            assert r["status"] == "unsupported" and "backward" in r["detail"] and r["median_s"] is None
    md = (tiny / "bench.md").read_text()
    assert "## 8 x 4, fwd" in md and "## 16 x 8, fwd+bwd" in md and "| numpy/eager" in md
    assert "1 (baseline)" in md and "## Not measured" in md and "![" in md and "interleaved" in md
    for name in ("bench-time", "bench-speedup"):
        assert (tiny / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert "<svg" in (tiny / f"{name}.svg").read_text()
    assert '<img src="bench-time.png"' in (tiny / "bench.html").read_text()
    assert 'href="bench.html"' in (tiny / "index.html").read_text()


@needs_bench
def test_report_merges_runs_of_two_machines(tiny, tmp_path):
    d = json.loads((tiny / "bench.json").read_text())
    paths = []
    for name in ("cpu-box", "gpu-box"):
        d["environment"]["machine"] = name
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(d))
    r = mmconf("report", *map(str, paths), "--out", str(tmp_path / "merged"))
    assert r.returncode == 0, r.stdout + r.stderr
    merged = json.loads((tmp_path / "merged" / "bench.json").read_text())
    assert {r["machine"] for r in merged["records"]} == {"cpu-box", "gpu-box"}
    md = (tmp_path / "merged" / "bench.md").read_text()
    assert "| machine" in md and "| cpu-box" in md and "| gpu-box" in md


@needs_bench
def test_gate_fails_a_slowed_kernel_and_passes_an_unchanged_one(tmp_path):
    """A kernel author's loops: the old and the new version interleaved in one run (--before), and
    a saved run against a later one (--compare)."""
    kernel = tmp_path / "kern.py"
    kernel.write_text("from tests.kernels.bench_kernels import once, twenty_times\nsame = once\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "PYTHONDONTWRITEBYTECODE": "1"}
    args = ["--sizes", "64x100", "--passes", "fwd", "--budget", "0.6", "--block", "0.01", "--max-slowdown", "50%"]

    def bench(new, before, out, *extra):
        return mmconf("bench", "--backends", f"check:numpy:kern:{new}", "--before", f"check:numpy:kern:{before}/eager",
                      *args, "--out", str(tmp_path / out), *extra, env=env)

    def verdict_expected(outs, verdict, code):
        """Rows measured under contention (a busy machine) must come out INCONCLUSIVE instead."""
        rows = [r for out in outs.split() for r in json.loads((tmp_path / out / "bench.json").read_text())["records"]]
        contended = any(r.get("contended") for r in rows)
        return (stats.INCONCLUSIVE, 3) if contended else (verdict, code)

    r = bench("twenty_times", "once", "slowed")
    verdict, code = verdict_expected("slowed", stats.SLOWER, 1)
    assert r.returncode == code and verdict in r.stdout, r.stdout + r.stderr
    assert "Regression check against check:numpy:kern:once/eager" in (tmp_path / "slowed" / "bench.md").read_text()
    r = bench("same", "once", "unchanged")
    # unchanged code is never called SLOWER; with this small budget on a noisy VM its interval may
    # be too wide to say `same` (INCONCLUSIVE, exit 3): the gate's `same` is tested on synthetic timings
    assert r.returncode in (0, 3) and "SLOWER" not in r.stdout and "FASTER" not in r.stdout, r.stdout + r.stderr

    def against(version, out, *extra):  # the same backend name, its code changed in between
        (tmp_path / "mine.py").write_text(f"from tests.kernels.bench_kernels import {version} as loss\n")
        return mmconf("bench", "--backends", "numpy,check:numpy:mine:loss", "--baseline", "numpy/eager",
                      *args, "--out", str(tmp_path / out), *extra, env=env)

    assert against("once", "before").returncode == 0
    r = against("twenty_times", "later", "--compare", str(tmp_path / "before" / "bench.json"))
    verdict, code = verdict_expected("before later", stats.SLOWER, 1)
    assert r.returncode == code and verdict in r.stdout, r.stdout + r.stderr


@needs_bench
def test_a_crash_or_a_hang_costs_its_row_only(tmp_path):
    r = mmconf("bench", "--backends", "check:numpy:tests.kernels.bench_kernels:crash_16_hang_32", "--sizes",
               "8x4,16x4,32x4,64x4", "--passes", "fwd", *FAST, "--timeout", "3", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    status = {r["N"]: r for r in json.loads((tmp_path / "bench.json").read_text())["records"]}
    assert status[16]["status"] == "crash" and "SIGSEGV" in status[16]["detail"]
    assert status[32]["status"] == "timeout"
    assert status[8]["status"] == status[64]["status"] == "ok" and status[8]["median_s"] > 0


@pytest.mark.parametrize("args, words", [
    (["--sizes", "3y4"], "bad size"),
    (["--dtypes", "float8"], "unknown dtype"),
    (["--max-slowdown", "lots"], "max-slowdown"),
    (["--compare", "/nonexistent/bench.json"], "cannot read"),
    (["--before", "numpy"], "BACKEND/MODE"),
    (["--min-blocks", "3"], "at least 6"),
])
def test_bad_usage_exits_2(args, words):
    r = mmconf("bench", "--backends", "numpy", *args)
    assert r.returncode == 2 and words in r.stderr, r.stderr
