"""Input gradients against the exact reference, kinks as intervals (SPEC.md MML-8, MML-12.3)."""

from conformance.pytest_plugin import judge


def test_grad(mmconf_record, mmconf_session):
    judge(mmconf_session.record(mmconf_record, "grad"))
