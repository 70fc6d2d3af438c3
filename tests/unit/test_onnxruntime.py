"""The export path: the onnxruntime backend's model matches its repro, and its deviations are the
listed ones."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnxruntime", "onnxscript", "torch")),
    reason="onnxruntime, onnxscript or torch is not installed")


def cases():
    from conformance.caseio import load_golden

    return {(c.id, c.dtype): c for c in load_golden()}


def test_repro_prints_what_the_backend_returns(tmp_path, monkeypatch):
    from conformance.runner import call_for
    from impls import load_backend
    from impls.base import literals

    monkeypatch.setenv("MMCONF_ONNX_CACHE", str(tmp_path))
    backend = load_backend("onnxruntime")
    backend.load()
    call = call_for(cases()[("basic/2x3-p2-none", "float32")], grad=False)
    value = backend.run(call, "cpu", "export", grad=False).value
    assert list(tmp_path.glob("*.onnx")), "the exported model was not cached"
    again = backend.run(call, "cpu", "export", grad=False).value  # from the cache
    assert again.tobytes() == value.tobytes()
    source = backend.repro(literals(call), "cpu", "export", "value")
    r = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True)
    assert r.returncode == 0, source + "\n" + r.stderr
    printed = r.stdout.strip().splitlines()[-2]  # ONNX Runtime's answer; the export's progress lines come first
    assert np.allclose(np.array(printed.strip("[]").split(), dtype=np.float32), value), (printed, value)


def test_no_gradient_is_a_capability_gap():
    from conformance import runner

    doc = runner.run(["onnxruntime"], [cases()[("basic/2x3-p1-mean", "float32")]], jobs=1, whole_store=False)
    verdicts = {r["check"]: r["verdict"] for r in doc["records"]}
    assert verdicts == {"value": "pass", "grad": "unsupported"}, doc["records"]


def test_a_negative_target_is_read_from_the_end():
    """ONNX's GatherElements counts a negative index from the end: the listed deviation."""
    from conformance import runner

    doc = runner.run(["onnxruntime"], [cases()[("invalid/target-negative", "float32")],
                                        cases()[("invalid/target-too-large", "float32")]], jobs=1, whole_store=False)
    by_case = {r["case"]: r for r in doc["records"]}
    assert by_case["invalid/target-too-large"]["verdict"] == "pass"  # ONNX Runtime raises
    negative = by_case["invalid/target-negative"]
    assert negative["verdict"] == "fail" and negative["deviation"]["clause"] == "MML-10.9", negative


def test_the_registry_built_once_exports_the_same_model(monkeypatch):
    """The backend builds the exporter's translation registry once per process; an export then
    gives the bytes of the exporter as shipped, which builds it for every export."""
    from torch.onnx._internal.exporter._registration import ONNXRegistry

    from conformance.runner import call_for
    from impls import load_backend

    backend = load_backend("onnxruntime")
    backend.load()
    ids = ("basic/2x3-p2-none", "options/p1-m0.1-weight-mean")
    calls = [call_for(cases()[(i, "float32")], grad=False) for i in ids]
    once = [backend._export(call) for call in calls]
    assert ONNXRegistry.from_torchlib.cache_info().hits >= 1
    monkeypatch.setattr(ONNXRegistry, "from_torchlib", classmethod(ONNXRegistry.from_torchlib.__wrapped__))
    assert [backend._export(call) for call in calls] == once
