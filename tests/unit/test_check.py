"""`mmconf check` passes a kernel written from the spec and catches the two classic mistakes."""

import subprocess
import sys

import pytest


def check(target, framework="numpy", *extra):
    return subprocess.run([sys.executable, "-m", "conformance", "check", target, "--framework", framework, *extra],
                          capture_output=True, text=True)


def test_correct_kernel_conforms():
    r = check("tests.kernels.numpy_kernels:correct")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verdict: CONFORMS" in r.stdout and "no backward function" in r.stdout  # listed, not failed


@pytest.mark.parametrize("kernel, case, clause", [
    ("weight_inside", "errata/p2-weight2", "MML-11.1"),
    ("all_classes_minus_margin", "options/p2-mneg-noweight-none", "MML-2.2"),
])
def test_wrong_kernels_are_caught(kernel, case, clause):
    r = check(f"tests.kernels.numpy_kernels:{kernel}", "numpy", "--show", "500")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "DOES NOT CONFORM" in r.stdout and case in r.stdout and clause in r.stdout


TORCH_CHEAP = ("--dtypes", "float32,float64", "--modes", "eager")  # compile mode: minutes of Inductor builds


def test_correct_torch_kernel_conforms():
    pytest.importorskip("torch")
    r = check("tests.kernels.torch_kernels:correct", "torch", *TORCH_CHEAP)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verdict: CONFORMS" in r.stdout


@pytest.mark.parametrize("kernel, case, clause", [
    ("weight_inside", "errata/p2-weight2", "MML-11.1"),
    ("all_classes_minus_margin", "options/p2-mneg-noweight-none", "MML-2.2"),
    ("weight_read_as_contiguous", "upstream/torch-104852-strided-weight-p1-mean", "MML-1.8"),
])
def test_wrong_torch_kernels_are_caught(kernel, case, clause):
    pytest.importorskip("torch")
    r = check(f"tests.kernels.torch_kernels:{kernel}", "torch", *TORCH_CHEAP, "--show", "500")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "DOES NOT CONFORM" in r.stdout
    assert any(case in line and clause in line for line in r.stdout.splitlines()), r.stdout  # named together


def test_bad_usage_exits_2():
    assert check("no_colon_here").returncode == 2
    assert check("x:y", "cobol").returncode == 2
    r = check("tests.kernels.no_such_module:f")
    assert r.returncode == 2 and "no_such_module" in r.stderr
