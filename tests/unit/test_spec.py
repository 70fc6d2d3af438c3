"""The spec as code reads every clause of SPEC.md."""

import re

from conformance.spec import SPEC_PATH, clauses, legacy_reduction


def test_every_clause_is_parsed_once():
    text = SPEC_PATH.read_text()
    ids = re.findall(r"^\*\*(MML-\d+\.\d+)", text, flags=re.M)
    assert len(ids) == len(set(ids)) == len(clauses())
    assert list(clauses()) == ids


def test_legacy_mapping():
    assert legacy_reduction(None, None) == "mean"
    assert legacy_reduction(False, None) == "sum"
    assert legacy_reduction(True, False) == "none"
    assert legacy_reduction(False, False) == "none"
    assert legacy_reduction(None, True) == "mean"
