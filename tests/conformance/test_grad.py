"""Input gradients against the exact reference, kinks as intervals (SPEC.md MML-8, MML-12.3)."""

from conformance.pytest_plugin import judge


def test_grad(mmconf_record, mmconf_session):
    judge(mmconf_session.record(mmconf_record, "grad"))


def test_fd(mmconf_record, mmconf_session):
    """Our own implementations' values against their gradients, by central differences in float64."""
    judge(mmconf_session.record(mmconf_record, "fd"))
