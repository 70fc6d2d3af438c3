"""`mmconf bench`: the harness runs and writes well-formed output, survives a crashing or hanging
kernel, merges runs of several machines, and its regression gate judges ratios within each run.
Nothing here asserts a speed: the slowdowns it checks are twenty-fold against a 50% threshold."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import report
from conformance.bench import grid
from conformance.bench.compare import Compare, add_ratios
from conformance.bench.measurement import Measurement
from conformance.bench.timer import Timer

ROOT = Path(__file__).resolve().parents[2]
RECORD_KEYS = {"backend", "mode", "device", "dtype", "N", "C", "pass", "status", "median_s", "iqr_s", "rounds",
               "ratio", "gbps", "pct_bandwidth", "compile_s", "bytes", "noisy", "peak_bytes", "machine"}
FAST = ["--budget", "0.02", "--min-rounds", "3"]
MISSING = [m for m in ("pytest_benchmark", "matplotlib", "tabulate") if importlib.util.find_spec(m) is None]
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


def test_timer_sizes_rounds_to_the_call():
    t = Timer(lambda: None, budget_s=1.0, min_rounds=7, max_rounds=2000, min_round_s=2e-4)
    assert t.plan(1e-5) == (2000, 20)  # fast: several calls per round, as many rounds as allowed
    assert t.plan(0.01) == (100, 1)
    assert t.plan(0.5) == (7, 1)  # slow: the minimum, past the budget


def test_timer_times_the_first_call_apart_and_hands_rounds_to_pedantic():
    calls = []

    class Benchmark:
        def pedantic(self, fn, rounds, iterations, warmup_rounds):
            self.args = rounds, iterations, warmup_rounds
            for _ in range(rounds * iterations):
                fn()

    t = Timer(lambda: calls.append(1), budget_s=0.001, min_rounds=3, warmup_s=0.0)
    t.first_call()
    assert len(calls) == 1 and t.first_call_s >= 0
    b = Benchmark()
    t.measure(b)
    assert t.warmup_calls >= 2 and b.args[0] >= 3 and b.args[2] == 0
    assert len(calls) == 1 + t.warmup_calls + b.args[0] * b.args[1]


def test_noisy_flag():
    m = Measurement(median=1.0, q1=0.9, q3=1.15, min=0.8, mean=1.0, rounds=9, iterations=1)
    assert m.iqr == pytest.approx(0.25) and m.noisy(0.1) and not m.noisy(0.3)


def rec(backend, median, machine="a", status="ok", mode="eager", size=(64, 100)):
    return {"backend": backend, "mode": mode, "device": "cpu", "dtype": "float32", "N": size[0], "C": size[1],
            "pass": "fwd", "status": status, "median_s": median, "machine": machine}


def doc(records, baseline="base/eager"):
    add_ratios(records, baseline)
    return {"baseline": baseline, "records": records}


def test_ratios_cancel_machine_drift():
    old = doc([rec("base", 1.0), rec("kern", 2.0)])
    drifted = doc([rec("base", 3.0, "b"), rec("kern", 6.0, "b")])  # everything three times slower
    c = Compare(old, drifted, max_slowdown=0.1)
    assert not c.failed and [ch.verdict for ch in c.changes] == ["baseline", "ok"]
    slower = Compare(old, doc([rec("base", 1.0), rec("kern", 2.5)]), max_slowdown=0.1)
    assert slower.failed and slower.changes[1].verdict == "SLOWER" and slower.changes[1].change == pytest.approx(0.25)
    faster = Compare(old, doc([rec("base", 1.0), rec("kern", 1.0)]), max_slowdown=0.1)
    assert not faster.failed and faster.changes[1].verdict == "faster"


def test_rows_without_a_baseline_are_compared_only_when_asked():
    old = doc([rec("kern", 1.0)])
    new = doc([rec("kern", 2.0), rec("other", 1.0), rec("kern", None, status="unsupported", size=(8, 4))])
    assert old["records"][0]["ratio"] is None
    c = Compare(old, new, max_slowdown=0.1)
    assert not c.failed and [ch.verdict for ch in c.changes] == ["not comparable", "new row", "new row"]
    absolute = Compare(old, new, max_slowdown=0.1, absolute=True)
    assert absolute.failed and absolute.changes[0].basis == "median"


def test_missing_baseline_leaves_ratios_empty():
    records = [rec("kern", 1.0)]
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
@pytest.mark.xdist_group("bench")
def test_tiny_run_writes_well_formed_output(tiny):
    d = json.loads((tiny / "bench.json").read_text())
    assert report.is_bench(d) and d["baseline_found"]
    env = d["environment"]
    assert env["cpu"] and env["threads"] >= 1 and env["bandwidth"]["cpu"]["gbps"] > 0 and "numpy" in env["versions"]
    assert len(d["records"]) == 2 * 2 * 2 * 2  # backends x dtypes x sizes x passes
    for r in d["records"]:
        assert RECORD_KEYS <= set(r), RECORD_KEYS - set(r)
        if r["backend"] == "numpy":
            assert r["status"] == "ok" and r["ratio"] == 1.0 and r["rounds"] >= 3
            assert 0 < r["q1_s"] <= r["median_s"] <= r["q3_s"] and r["gbps"] > 0 and r["compile_s"] >= 0
        elif r["pass"] == "fwd":
            assert r["status"] == "ok" and r["ratio"] > 0
        else:  # a NumPy kernel without a backward function: a capability gap, reported
            assert r["status"] == "unsupported" and "backward" in r["detail"] and r["median_s"] is None
    md = (tiny / "bench.md").read_text()
    assert "## 8 x 4, fwd" in md and "## 16 x 8, fwd+bwd" in md and "| numpy/eager" in md
    assert "1.00 (baseline)" in md and "## Not measured" in md and "![" in md
    for name in ("bench-time", "bench-speedup"):
        assert (tiny / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert "<svg" in (tiny / f"{name}.svg").read_text()
    assert '<img src="bench-time.png"' in (tiny / "bench.html").read_text()
    assert 'href="bench.html"' in (tiny / "index.html").read_text()


@needs_bench
@pytest.mark.xdist_group("bench")
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
    """A kernel author's loop: bench the kernel beside the baseline, save, change it, compare."""
    kernel = tmp_path / "kern.py"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    args = ["bench", "--backends", "numpy,check:numpy:kern:loss", "--baseline", "numpy/eager", "--sizes", "64x100",
            "--passes", "fwd", "--budget", "0.2"]

    def bench(version, out, *extra):
        kernel.write_text(f"from tests.kernels.bench_kernels import {version} as loss\n")
        return mmconf(*args, "--out", str(tmp_path / out), *extra, env=env)

    r = bench("once", "before")
    assert r.returncode == 0, r.stdout + r.stderr
    saved = str(tmp_path / "before" / "bench.json")
    r = bench("twenty_times", "slowed", "--compare", saved, "--max-slowdown", "50%")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "SLOWER" in r.stdout and "regression check: FAILED" in r.stdout
    assert "Regression check" in (tmp_path / "slowed" / "bench.md").read_text()
    r = bench("once", "unchanged", "--compare", saved, "--max-slowdown", "50%")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "regression check: passed" in r.stdout


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
])
def test_bad_usage_exits_2(args, words):
    r = mmconf("bench", "--backends", "numpy", *args)
    assert r.returncode == 2 and words in r.stderr, r.stderr
