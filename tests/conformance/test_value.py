"""Loss values against the exact reference (SPEC.md MML-1 to MML-7, MML-9, MML-12)."""

from conformance.pytest_plugin import judge


def test_value(mmconf_record, mmconf_session):
    judge(mmconf_session.record(mmconf_record, "value"))
