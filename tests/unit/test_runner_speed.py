"""What makes a run fast changes no record: lanes run one at a time on a cold cache and lanes run
in parallel on the warm cache give the same records."""

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from conformance import cache, runner
from conformance.caseio import load_golden

# a case with values and gradients (finite differences too, for our own) and an error case: each
# new configuration costs a compile, seconds to tens of seconds cold
PICK = ("float64-basic/4x5-p2-none", "float64-invalid/target-")


def same(records) -> str:
    """Records as text, with what differs between any two runs masked: the paths of generated code
    (Inductor's messages name the file its cache directory holds) and objects' addresses."""
    text = re.sub(r"/[^\s,:\"]+\.(cpp|py)\b", "<generated code>", json.dumps(records, sort_keys=True))
    return re.sub(r"0x[0-9a-f]{8,}", "<address>", text)


def some_cases():
    picked, seen = [], set()
    for c in load_golden():
        for k in PICK:
            if k in f"{c.dtype}-{c.id}" and k not in seen:
                picked.append(c)
                seen.add(k)
    return picked


@pytest.mark.parametrize("backend, mode, cached", [
    ("jax", "jit", "jax"), ("torch", "compile", "inductor"), ("onnxruntime", "export", "onnx")])
def test_lanes_and_caches_change_no_record(tmp_path, monkeypatch, backend, mode, cached):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    cases = some_cases()
    monkeypatch.setenv("MMCONF_CACHE_DIR", str(tmp_path))
    # the workers would keep a cache variable set in this process (and torch.compile sets
    # TORCHINDUCTOR_CACHE_DIR in the process of any test that compiled in it)
    for var in ("JAX_COMPILATION_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "MMCONF_ONNX_CACHE"):
        monkeypatch.delenv(var, raising=False)
    # one lane at a time, compiling everything (a cold cache is no cache: each entry is written
    # after its compile), then two lanes at once, each compile a cache hit
    serial_cold = runner.run([backend, "numpy"], cases, modes=[mode, "eager"], jobs=1, whole_store=False)
    files = [p for p in tmp_path.glob(f"cpu-*/{cached}/**/*") if p.is_file()]
    verdicts = sorted({(r["mode"], r["verdict"], r.get("detail", "")[:200]) for r in serial_cold["records"]})
    assert files, f"nothing was cached in {cached}/; the records: {verdicts}"
    parallel_warm = runner.run([backend, "numpy"], cases, modes=[mode, "eager"], jobs=2, whole_store=False)
    assert serial_cold["records"], "no records"
    assert same(parallel_warm["records"]) == same(serial_cold["records"])


def test_lanes_run_longest_first_and_the_longest_in_shards(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCONF_CACHE_DIR", str(tmp_path))
    descriptions = {"numpy": {"modes": ["eager"], "traced_modes": []},
                    "jax": {"modes": ["eager", "jit"], "traced_modes": ["jit"]},
                    "tensorflow": {"modes": ["eager", "function", "xla"], "traced_modes": ["function", "xla"],
                                   "shared_lane": ["function", "xla"]},
                    "paddle": {"missing": "no"}}

    def names(*args):
        return [lane.name for lane in runner.longest_first(descriptions, *args)]

    # before any durations are known: the traced lanes first
    assert names() == ["jax/jit", "tensorflow/function+xla", "numpy/eager", "jax/eager", "tensorflow/eager"]
    assert names(["jit", "xla"]) == ["jax/jit", "tensorflow/xla"]  # a shared lane of one mode is that mode's
    cache.save_lane_seconds({"jax/jit": 100.0, "jax/eager": 200.0, "numpy/eager": 10.0, "tensorflow/eager": 90.0,
                             "tensorflow/function+xla": 600.0})
    assert names() == ["tensorflow/function+xla", "jax/eager", "jax/jit", "tensorflow/eager", "numpy/eager"]
    assert names(["jit"], 2) == ["jax/jit"]  # alone, but too short for two shards of a minute
    # on 2 jobs the 600 of 1000 seconds are more than a job's share: two shards, dealt by runner.deal
    assert names(None, 2) == ["tensorflow/function+xla#1of2", "tensorflow/function+xla#2of2", "jax/eager",
                              "jax/jit", "tensorflow/eager", "numpy/eager"]
    shard = runner.longest_first(descriptions, None, 2)[1]
    cases = some_cases()
    assert shard.work(descriptions["tensorflow"] | {"devices": ["cpu"]}, cases) == [
        ("cpu", "function", cases[1]), ("cpu", "xla", cases[1])]


def test_shards_keep_alike_cases_together_and_near_equal():
    cases = load_golden()
    shards = runner.deal(cases, 3)
    assert sorted(id(c) for s in shards for c in s) == sorted(id(c) for c in cases)
    where = {id(c): k for k, s in enumerate(shards) for c in s}
    for group in runner.groups(cases):  # one compile of a dynamic-shape compiler serves a group
        assert len({where[id(c)] for c in group}) == 1
    order = {id(c): i for i, c in enumerate(cases)}
    assert all([order[id(c)] for c in s] == sorted(order[id(c)] for c in s) for s in shards)
    largest = max(map(len, runner.groups(cases)))
    assert max(map(len, shards)) - min(map(len, shards)) <= largest


def test_a_lanes_helpers_change_no_record(monkeypatch):
    """A job with no lane left to start joins the lane with work left, in a worker of its own:
    the records are a single worker's."""
    monkeypatch.setenv("MMCONF_CACHE_DIR", cache.OFF)
    cases = load_golden()
    alone = runner.run(["numpy"], cases, jobs=1, whole_store=False)
    monkeypatch.setattr(runner, "MIN_SHARD_SECONDS", 0.0)  # any work left is worth a helper
    helped = runner.run(["numpy"], cases, jobs=2, whole_store=False)
    assert [r["workers"] for r in helped["timings"]["rows"]] == [2]
    assert [r["cases"] for r in helped["timings"]["rows"]] == [r["cases"] for r in alone["timings"]["rows"]]
    assert alone["records"] and same(helped["records"]) == same(alone["records"])


def test_a_shared_lane_changes_no_record(monkeypatch):
    """TensorFlow's xla mode compiling the function mode's traces, in the lane they share, gives
    the records xla gives alone, tracing for itself."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed")
    monkeypatch.setenv("MMCONF_CACHE_DIR", cache.OFF)
    cases = some_cases()
    alone = runner.run(["tensorflow"], cases, modes=["xla"], jobs=1, whole_store=False)["records"]
    shared = runner.run(["tensorflow"], cases, modes=["function", "xla"], jobs=1, whole_store=False)["records"]
    assert alone and same([r for r in shared if r["mode"] == "xla"]) == same(alone)


def test_timings_account_for_every_lane(monkeypatch):
    monkeypatch.setenv("MMCONF_CACHE_DIR", cache.OFF)
    doc = runner.run(["numpy"], some_cases(), jobs=1, whole_store=False)
    (row,) = doc["timings"]["rows"]
    assert (row["backend"], row["mode"], row["cases"]) == ("numpy", "eager", len(some_cases()))
    assert set(runner.Timings.PARTS) <= set(row) and row["start"] > 0  # numpy's calls round to 0 ms
    assert doc["timings"]["wall_s"] >= sum(row[p] for p in runner.Timings.PARTS) > 0


def test_cache_is_private_and_keyed_by_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCONF_CACHE_DIR", str(tmp_path / "c"))
    env = cache.worker_env({})
    where = tmp_path / "c" / cache.host()
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(where / "jax")
    assert env["MMCONF_ONNX_CACHE"] == str(where / "onnx")
    assert (where.stat().st_mode & 0o077) == 0
    assert cache.worker_env({"JAX_COMPILATION_CACHE_DIR": "/mine"})["JAX_COMPILATION_CACHE_DIR"] == "/mine"
    (where / "jax").mkdir()
    (where / "jax" / "entry").write_bytes(b"x" * 10)
    (tmp_path / "c" / cache.ENVS / "paddle-3.3.1").mkdir(parents=True)
    (tmp_path / "c" / cache.ENVS / "paddle-3.3.1" / "lib").write_bytes(b"x" * 3)
    assert ("jax", 1, 10) in cache.usage() and (cache.ENVS, 1, 3) in cache.usage()
    cache.clear()
    assert not where.exists() and not (tmp_path / "c" / cache.ENVS).exists()
    monkeypatch.setenv("MMCONF_CACHE_DIR", cache.OFF)
    assert "JAX_COMPILATION_CACHE_DIR" not in cache.worker_env({})


def test_pytest_runs_each_lane_and_each_unit_module_on_one_xdist_worker():
    """Under `pytest -n 2` a lane's tests all run on one worker, which loads its framework and
    runs its cases once, and so do a unit module's tests, whose module fixtures then run once
    (xdist's own loadgroup spreads them over all workers on pytest 9.2)."""
    kernel = "check:numpy:tests.kernels.numpy_kernels:correct"
    modules = ["tests/unit/test_spec.py", "tests/unit/test_floats.py"]  # 72 quick tests
    args = ["-n", "2", "-v", "-p", "no:cacheprovider", "tests/conformance", *modules,
            "--mmconf-backends", f"numpy,{kernel}", "-k", "basic/ or test_spec or test_floats"]
    r = subprocess.run([sys.executable, "-m", "pytest", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:]
    workers: dict = {}
    for worker, backend in re.findall(r"^\[(gw\d+)\] .*PASSED .*?\[(\S+?)-cpu-", r.stdout, re.M):
        workers.setdefault(backend, set()).add(worker)
    for worker, module in re.findall(r"^\[(gw\d+)\] .*PASSED (tests/unit/\S+?\.py)::", r.stdout, re.M):
        workers.setdefault(module, set()).add(worker)
    assert set(workers) == {"numpy", kernel, *modules} and all(len(w) == 1 for w in workers.values()), workers
