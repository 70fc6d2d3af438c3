"""The harness survives what it tests: crashes, hangs, hostile outputs, interrupted runs and
damaged golden files."""

import json
import shutil
import subprocess
import sys

import pytest

from conformance import runner
from conformance.caseio import load_golden


def mmconf(*args, env=None):
    return subprocess.run([sys.executable, "-m", "conformance", *args], capture_output=True, text=True, env=env)


def check_records(tmp_path, kernel, *extra):
    out = tmp_path / "r.json"
    r = mmconf("check", f"tests.kernels.hostile:{kernel}", "--framework", "numpy", "--json", str(out), *extra)
    return r, json.loads(out.read_text())["records"]


def test_segfault_is_a_crash_verdict_and_the_run_goes_on(tmp_path):
    r, records = check_records(tmp_path, "segfault_on_nan", "-k", "float32-special/nan-,float32-basic/2x3")
    assert r.returncode == 1
    crashed = {x["case"] for x in records if x["verdict"] == "crash"}
    assert crashed and all("nan" in c for c in crashed)
    assert any("SIGSEGV" in x["detail"] for x in records if x["verdict"] == "crash")
    assert all(x["verdict"] == "pass" for x in records if x["case"].startswith("basic/") and x["check"] == "value")


def test_hang_is_a_timeout_verdict_and_the_run_goes_on(tmp_path):
    r, records = check_records(tmp_path, "hang_on_empty_batch", "-k", "float32-sizes/empty-batch-sum,float32-sizes/one",
                               "--timeout", "3")
    assert r.returncode == 1
    assert {x["verdict"] for x in records if x["case"] == "sizes/empty-batch-sum"} == {"timeout"}
    assert any(x["verdict"] == "pass" for x in records if x["case"].startswith("sizes/one"))


@pytest.mark.parametrize("kernel, words", [
    ("wrong_shape", "shape"), ("wrong_dtype", "dtype"), ("returns_none", "BadOutput"),
    ("raises", "this kernel always fails"), ("mutates_input", "MML-1.7"),
])
def test_hostile_outputs_get_verdicts(tmp_path, kernel, words):
    r, records = check_records(tmp_path, kernel, "-k", "float32-basic/2x3-p1")
    assert r.returncode == 1, r.stdout + r.stderr
    values = [x for x in records if x["check"] == "value"]
    assert values and all(x["verdict"] == "fail" and words in x["detail"] for x in values), values[0]


def test_worker_over_its_memory_bound_retires_between_requests(tmp_path, monkeypatch):
    """A worker past MMCONF_WORKER_MAX_RSS_MIB answers, then exits; the next request gets a fresh
    one, and no record calls that a crash."""
    monkeypatch.setenv("MMCONF_WORKER_MAX_RSS_MIB", "1")
    session = runner.Session(log_dir=tmp_path)
    try:
        cases = [c for c in load_golden() if c.dtype == "float32" and c.id.startswith("basic/")][:3]
        records = [r for c in cases for r in session.run_case("numpy", "cpu", "eager", c)]
        worker, _ = session.worker("numpy", "numpy/eager")  # the eager lane's
        assert {r["verdict"] for r in records} == {"pass"}, records
        assert worker.retirements >= len(cases) and worker.restarts == 0
    finally:
        session.close()


def test_crash_under_pytest_is_a_failed_test_not_a_broken_run():
    args = ["-q", "-p", "no:cacheprovider", "tests/conformance/test_value.py",
            "--mmconf-backends", "check:numpy:tests.kernels.hostile:segfault_on_nan",
            "-k", "float32-special/nan-other or float32-basic/2x3-p1"]
    r = subprocess.run([sys.executable, "-m", "pytest", *args], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout[-2000:]
    assert "crash: worker killed by signal SIGSEGV" in r.stdout
    assert " passed" in r.stdout.splitlines()[-1] and " failed" in r.stdout.splitlines()[-1]


def test_resume_skips_what_the_journal_holds(tmp_path, monkeypatch):
    cases = [c for c in load_golden() if c.family == "kinks"]
    journal = tmp_path / "results.partial.jsonl"
    full = runner.run(["numpy"], cases, journal=journal)
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[: len(lines) // 2]) + "\n" + lines[len(lines) // 2][:20])  # torn write
    ran = []
    real = runner.Session.run_case

    def counting(self, backend, device, mode, case, lane=None):
        ran.append(case.key)
        return real(self, backend, device, mode, case, lane)

    monkeypatch.setattr(runner.Session, "run_case", counting)
    resumed = runner.run(["numpy"], cases, journal=journal, resume=True)
    assert 0 < len(ran) < len(cases)
    assert resumed["records"] == full["records"]


def test_flipped_byte_is_caught_by_verify_and_run(tmp_path):
    from cases import GOLDEN_DIR

    store = tmp_path / "golden"
    shutil.copytree(GOLDEN_DIR, store)
    path = store / "errata.json"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x20
    path.write_bytes(bytes(data))
    env = {**__import__("os").environ, "MMCONF_GOLDEN": str(store)}
    for args in (["cases", "verify"], ["run", "--backends", "numpy", "--json", str(tmp_path / "o.json")]):
        r = mmconf(*args, env=env)
        assert r.returncode == 2 and "errata.json" in r.stderr and "sha256" in r.stderr, r.stderr
