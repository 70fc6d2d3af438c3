"""`mmconf cases import torch-opinfo`: PyTorch's own test inputs for this op, from the installed
torch, as a case file that runs like any other."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance.caseio import load_file

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest", reason="PyTorch's OpInfo module needs it (the torch extra)")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The command, as a user runs it: in a process of its own, since importing PyTorch's test
    utilities changes global state (cudnn flags, argument parsing) that other tests would inherit."""
    path = tmp_path_factory.mktemp("opinfo") / "torch-opinfo.json"
    r = subprocess.run([sys.executable, "-m", "conformance", "cases", "import", "torch-opinfo", "--out", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "wrote" in r.stdout, r.stdout + r.stderr
    return path


def test_import_writes_every_sample_reference_and_error_input(imported):
    cases = load_file(imported)
    by_source = {}
    for c in cases:
        kind = c.id.split("/")[1].split("-")[0]
        by_source.setdefault(kind, []).append(c)
        assert c.doc.startswith(f"PyTorch {torch.__version__} OpInfo nn.functional.multi_margin_loss")
    assert {"sample", "reference", "error"} == set(by_source)
    assert {c.dtype for c in by_source["sample"]} >= {"float32", "float64"}
    assert len(by_source["reference"]) > 100  # shapes x p x margins x weights x reductions
    # PyTorch's 0-d input sample is an invalid call for the spec (MML-10.3), and the doc says so
    zero_d = [c for c in by_source["sample"] if np.ndim(c.x) == 0]
    assert zero_d and all(c.error == "input_rank" for c in zero_d)
    errors = by_source["error"]
    assert all(c.error is not None for c in errors)
    twins = [c for c in errors if c.id.endswith("-int64-target")]
    assert twins and all(c.target_dtype == "int64" and c.error != "target_dtype" for c in twins)
    assert {c.error for c in twins} >= {"reduction", "no_classes", "weight_shape", "p"}
    assert "target_dtype" in {c.error for c in errors}  # the float-target error input itself


def test_imported_file_follows_the_schema(imported):
    import jsonschema

    schema = json.loads((Path(__file__).parents[2] / "conformance" / "case.schema.json").read_text())
    jsonschema.validate(json.loads(imported.read_text()), schema)


def test_imported_cases_run_with_no_new_failure(imported, tmp_path):
    """Through our NumPy implementation and torch eager: every failure is a listed deviation
    (torch's 0-d input among them, matched by mechanism), and no strict entry passes."""
    from conformance import report
    from conformance.record import unexpected_pass
    from conformance.runner import run

    doc = run(["numpy", "torch"], load_file(imported), modes=["eager"], whole_store=False)
    new = [r["id"] + " " + r["check"] for r in doc["records"] if report.unexpected(r)]
    assert not new, new[:10]
    assert not [r["id"] for r in doc["records"] if unexpected_pass(r)]
    zero_d = [r for r in doc["records"] if r["backend"] == "torch" and "x_0d" in r.get("deviation", {}).get("when", [])]
    assert zero_d, "torch's acceptance of a 0-d input is matched by its feature, not a golden id"
    report.write_report(doc, tmp_path)  # the findings name each entry by its label
    assert "torch-cpu-eager-* when x_0d [error]" in (tmp_path / "conformance.md").read_text()
