"""mmconf matrix: what it keeps of each release's run, and the table it writes (the environments
themselves are built by the published runs: a release is a download of hundreds of MB)."""

import json
import subprocess
import sys

from conformance import matrix


def record(case, verdict, clauses=("MML-7.1",), deviation=None, mode="eager", detail=""):
    r = {"id": f"paddle-cpu-{mode}-float32-{case}", "case": case, "family": case.split("/")[0], "backend": "paddle",
         "device": "cpu", "mode": mode, "dtype": "float32", "check": "value", "clauses": list(clauses),
         "verdict": verdict, "detail": detail}
    if deviation:
        r["deviation"] = deviation
    return r


def run_doc(version, records):
    return {"backends": {"paddle": {"version": version}}, "records": records}


def test_each_release_is_summarised_by_clause_and_written_as_a_table(tmp_path):
    listed = {"label": "paddle-cpu-* when z_nan [value]", "clause": "MML-7.1", "reason": "r"}
    old = matrix.summarise("2.6.2", run_doc("2.6.2", [
        record("special/nan", "fail", ("MML-7.1", "MML-2.1"), listed),  # blamed on its entry's clause only
        record("basic/a", "fail", ("MML-5.1",)), record("basic/b", "pass", ("MML-2.1",)),
        record("basic/c", "unsupported", ("MML-9.1",)),
        record("basic/b", "fail", ("MML-2.1",), mode="static", detail="raised NameError: in transformed code")]))
    new = matrix.summarise("3.3.1", run_doc("3.3.1", [
        record("special/nan", "pass", ("MML-7.1", "MML-2.1")), record("basic/a", "pass", ("MML-5.1",))]))
    assert (old["failing"], old["known"], old["new"], old["unsupported"], old["raised"]) == (3, 1, 2, 1, 1)
    assert old["modes"]["eager"]["failing"] == 2 and old["modes"]["static"]["raised"] == 1
    # the listed failure is blamed on its entry's clause alone, not on MML-2.1 its case also cites
    assert old["clauses"]["MML-7.1"] == {"fail": 1} and old["clauses"]["MML-2.1"] == {"pass": 1, "fail": 1}
    doc = {"kind": "mmconf-matrix", "backend": "paddle", "generated": "now", "machine": "here", "python": "3.11",
           "versions": [old, new]}
    paths = matrix.write(doc, tmp_path)
    assert sorted(p.name for p in paths) == ["paddle.html", "paddle.json", "paddle.md"]
    text = (tmp_path / "paddle.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| MML-5.1"))
    assert row.split("|")[2:4] == [" ✗ 1 ", " ✓ "], row
    assert "| MML-9.1" in text and json.loads((tmp_path / "paddle.json").read_text())["versions"][1]["pass"] == 2


def test_unknown_backend_is_refused():
    r = subprocess.run([sys.executable, "-m", "conformance", "matrix", "torch"], capture_output=True, text=True)
    assert r.returncode == 2 and "no release list for 'torch'" in r.stderr
