"""Issue drafts: one per vendor backend and mechanism, from a run's results; a rerun replaces only
the drafts it wrote."""

import json
import subprocess
import sys

from conformance import spec, upstream


def record(backend, case, check, deviation=None, verdict="fail", **kw):
    r = {"id": f"{backend}-cpu-eager-float32-{case}", "case": case, "family": case.split("/")[0],
         "backend": backend, "device": "cpu", "mode": "eager", "dtype": "float32", "check": check,
         "clauses": ["MML-7.1"], "verdict": verdict, "detail": "1 of 2 value element(s) outside the bound", **kw}
    if deviation:
        r["deviation"] = deviation
    return r


NAN = {"label": "torch-cpu-eager-* when z_nan [value]", "clause": "MML-7.1", "reason": "NaN terms are dropped",
       "where": "torch-cpu-eager-*", "when": ["z_nan"], "check": ["value"], "strict": True}
DOC = {
    "generated": "2026-11-30 12:00 UTC",
    "backends": {"torch": {"version": "2.13.0", "ours": False}, "jax": {"version": "0.10", "ours": True}},
    "records": [
        record("torch", "special/nan-other-mean", "value", NAN, expected=["nan"], got=["0x1p+0"],
               bound=0.0, repro="print('small')"),
        record("torch", "special/margin-nan", "value", NAN, expected=["nan", "nan", "nan"], got=["0x0p+0"] * 3,
               bound=0.0, repro="print('large')"),
        record("torch", "basic/2x3", "value", verdict="pass"),
        record("torch", "basic/4x5", "value"),  # a new failure: no draft before someone looks
        record("jax", "special/nan-other-mean", "value", {**NAN, "label": "jax entry"}),  # ours: fixed here
    ],
}


def test_one_draft_per_vendor_mechanism_with_the_smallest_repro(tmp_path):
    written = upstream.write(DOC, tmp_path)
    assert len(written) == 1
    (path, title), = written
    assert path.name.startswith("torch-01-") and "MML-7.1" in title
    text = path.read_text()
    assert text.startswith(upstream.MARK)
    assert "torch 2.13.0" in text and "NaN terms are dropped" in text and "print('small')" in text
    assert "print('large')" not in text and "2 failing check(s) over 2 case(s)" in text
    assert spec.clause_text("MML-7.1") in text  # the clause's own words, from SPEC.md
    assert path.name in (tmp_path / "README.md").read_text()


def test_a_rerun_replaces_its_drafts_and_nothing_else(tmp_path):
    mine = tmp_path / "notes.md"
    mine.write_text("my own notes\n")
    upstream.write(DOC, tmp_path)
    stale = tmp_path / "torch-09-old.md"
    stale.write_text(upstream.MARK + "\nold\n")
    upstream.write({**DOC, "records": []}, tmp_path)
    assert mine.read_text() == "my own notes\n" and not stale.exists()
    assert "No vendor deviations." in (tmp_path / "README.md").read_text()


def test_cli_writes_drafts_and_refuses_what_is_not_results(tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({**DOC, "environment": {}}))
    r = subprocess.run([sys.executable, "-m", "conformance", "findings", str(results), "--upstream"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "upstream" / "README.md").exists()
    (tmp_path / "bad.json").write_text("[1, 2]")
    r = subprocess.run([sys.executable, "-m", "conformance", "findings", str(tmp_path / "bad.json")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "bad.json" in r.stderr


def test_a_release_matrix_says_which_releases_fail_under_the_clause(tmp_path):
    matrix = tmp_path / "matrix"
    matrix.mkdir()
    (matrix / "torch.json").write_text(json.dumps({"versions": [
        {"version": "2.1", "clauses": {"MML-7.1": {"fail": 3, "pass": 1}}},
        {"version": "2.13", "clauses": {"MML-7.1": {"pass": 4}}}]}))
    (path, _), = upstream.write(DOC, tmp_path / "out", matrix)
    assert "failing records under MML-7.1 (`mmconf matrix torch`): 2.1; conforming: 2.13." in path.read_text()
    (path, _), = upstream.write(DOC, tmp_path / "out")  # no matrix: no such line
    assert "Releases with" not in path.read_text()
