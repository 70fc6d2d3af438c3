"""`mmconf check` under torch.compile: a kernel is compiled as users compile it, its graph breaks are
reported, and with --fullgraph a break is a capability gap, never a wrong value."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")

KERNEL = "tests.kernels.torch_kernels:checks_target_in_python"
CASES = "float32-basic/2x3-p1-none,float32-invalid/target-negative,float32-invalid/target-too-large"


def check(tmp_path, *extra):
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "conformance", "check", KERNEL, "-k", CASES, "--json", str(out),
                        *extra], capture_output=True, text=True)
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    return r, json.loads(out.read_text())["records"]


def test_a_kernel_that_branches_on_values_conforms_under_compile_with_its_break_reported(tmp_path):
    r, records = check(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]
    compiled = [x for x in records if x["mode"] == "compile"]
    assert compiled and all(x["verdict"] == "pass" for x in compiled)
    assert any(x.get("capture") for x in compiled) and "compiles with graph breaks" in r.stdout


def test_with_fullgraph_a_break_is_a_capability_gap_and_eager_still_passes(tmp_path):
    r, records = check(tmp_path, "--fullgraph")
    valid = [x for x in records if x["check"] != "error"]
    assert {x["verdict"] for x in valid if x["mode"] == "compile"} == {"unsupported"}
    assert all("cannot capture" in x["detail"] for x in valid if x["mode"] == "compile")
    assert {x["verdict"] for x in records if x["mode"] == "eager"} == {"pass"}


def test_a_jax_kernel_that_jit_cannot_trace_is_a_capability_gap(tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "r.json"
    kernel = "tests.kernels.jax_kernels:checks_target_in_python"
    r = subprocess.run([sys.executable, "-m", "conformance", "check", kernel, "--framework", "jax", "-k",
                        "float32-basic/2x3-p1-none", "--json", str(out)], capture_output=True, text=True)
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    records = json.loads(out.read_text())["records"]
    assert {x["verdict"] for x in records if x["mode"] == "jit"} == {"unsupported"}
    assert all("cannot capture" in x["detail"] for x in records if x["mode"] == "jit")
    assert {x["verdict"] for x in records if x["mode"] == "eager"} == {"pass"}
