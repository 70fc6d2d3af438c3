"""Invalid input must raise, or in traced modes answer NaN where allowed (SPEC.md MML-10)."""

from conformance.pytest_plugin import judge


def test_error(mmconf_record, mmconf_session):
    judge(mmconf_session.record(mmconf_record, "error"))
