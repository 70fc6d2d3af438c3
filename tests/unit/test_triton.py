"""The Triton implementation outside the suite: the drop-in function's guard without a GPU."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")


def test_cpu_tensor_without_the_interpreter_is_refused():
    code = ("import torch\nfrom impls.triton_backend import multi_margin_loss\n"
            "multi_margin_loss(torch.zeros(2, 3), torch.tensor([0, 1]))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "TRITON_INTERPRET=1" in r.stderr


def test_interpreter_runs_the_kernels():
    code = ("import os\nos.environ['TRITON_INTERPRET'] = '1'\nimport torch\n"
            "from impls.triton_backend import multi_margin_loss\n"
            "x = torch.tensor([[0.1, 0.2, 0.4, 0.8]], requires_grad=True)\n"
            "loss = multi_margin_loss(x, torch.tensor([3]))\nloss.backward()\n"
            "print(round(loss.item(), 6), x.grad.tolist())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "0.325" and "-0.75" in r.stdout
