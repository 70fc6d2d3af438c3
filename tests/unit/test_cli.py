"""The mmconf command line, run as a user would (subprocesses)."""

import json
import subprocess
import sys

import pytest


def mmconf(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "conformance", *args], capture_output=True, text=True, cwd=cwd)


def test_cases_verify_passes():
    r = mmconf("cases", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verified" in r.stdout


def test_run_own_cases_writes_reference_values(tmp_path):
    cases = tmp_path / "mine.json"
    cases.write_text(json.dumps({"cases": [
        {"id": "mine/specials", "x": [[0.5, "nan", 1.0], ["-inf", 2, "0x1.8p+1"]], "target": [1, 2], "p": 2,
         "margin": "0x1.8p+0", "weight": [1, "inf", 2], "reduction": "none", "dtype": "float32"},
        {"id": "mine/seed", "x": [0.1, 0.2, 0.4, 0.8], "target": 3, "p": 1, "dtype": "float64"},
    ]}))
    out = tmp_path / "out.json"
    r = mmconf("run", "--cases", str(cases), "--backends", "numpy", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    records = json.loads(out.read_text())["records"]
    seed = [x for x in records if x["case"] == "mine/seed" and x["check"] == "value"][0]
    assert seed["verdict"] == "pass" and abs(float.fromhex(seed["expected"]) - 0.325) < 1e-15
    special = [x for x in records if x["case"] == "mine/specials" and x["check"] == "value"][0]
    assert special["expected"][0] == "nan" and special["got"][0] == "nan"
    assert {x["check"] for x in records} == {"value", "grad", "fd"}  # fd: float64, ours
    assert not (tmp_path / "conformance.md").exists()
    # --json with --out (in either spelling) writes the report too
    r = mmconf("run", "--cases", str(cases), "--backends", "numpy", "--json", str(out), f"--out={tmp_path / 'rep'}")
    assert r.returncode == 0 and (tmp_path / "rep" / "conformance.md").exists(), r.stdout + r.stderr


@pytest.mark.parametrize("body, words", [
    ('{"cases": [{"id": "c1", "x": [[1, 2]], "target": [0], "p": "two", "dtype": "float32"}]}', ["c1", "'p'"]),
    ('{"cases": [{"id": "c2", "x": [[1, 2]], "target": [0], "p": 1}]}', ["c2", "'dtype'"]),
    ('{"cases": [', ["not valid JSON"]),
])
def test_malformed_case_file_exits_2_naming_case_and_field(tmp_path, body, words):
    path = tmp_path / "bad.json"
    path.write_text(body)
    r = mmconf("run", "--cases", str(path), "--backends", "numpy", "--json", str(tmp_path / "o.json"))
    assert r.returncode == 2
    assert all(w in r.stderr for w in words), r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.json").exists()


def test_run_golden_numpy_writes_report(tmp_path):
    r = mmconf("run", "--backends", "numpy", "-k", "kinks/,invalid/", "--out", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stdout + r.stderr
    md = (tmp_path / "rep" / "conformance.md").read_text()
    assert "MML-8.2" in md and "numpy/eager (cpu)" in md
    assert (tmp_path / "rep" / "index.html").read_text().startswith("<!DOCTYPE html>")


def test_gpu_command_without_a_gpu_says_so():
    r = mmconf("gpu")
    assert r.returncode == 2 and "no CUDA device" in r.stderr


def test_findings_read_an_infinite_bound_back_from_results_json():
    from conformance.report import _findings

    record = {"verdict": "fail", "backend": "b", "mode": "m", "device": "cpu", "family": "special",
              "check": "grad", "clauses": ["MML-8.4"], "id": "special/x", "expected": ["inf"], "got": ["nan"],
              "bound": "inf"}  # results.json writes infinities as strings
    text = " ".join(str(block[1]) for block in _findings([record]))
    assert "(bound inf)" in text and "NEW FAILURE" in text


def test_cases_import_names_a_bad_source():
    for args, words in ((("import",), "needs a source"), (("import", "foo"), "unknown source 'foo'"),
                        (("verify", "torch-opinfo"), "takes no source")):
        r = mmconf("cases", *args)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
