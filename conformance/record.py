"""The record: one check of one case on one backend, device, mode and dtype, and its verdict. The
runner makes records, the deviation lists annotate them, and the report, the CLI and the pytest
plugin read them; `Tally` is the one count of verdicts they all print.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import NotRequired, TypedDict

PASS, FAIL, CRASH, TIMEOUT, UNSUPPORTED = "pass", "fail", "crash", "timeout", "unsupported"
VERDICTS = (PASS, FAIL, CRASH, TIMEOUT, UNSUPPORTED)
FAILING = (FAIL, CRASH, TIMEOUT)  # the verdicts that break conformance; unsupported is a capability gap
CHECKS = ("value", "grad", "fd", "error")


class Record(TypedDict):
    id: str  # backend-device-mode-dtype-case: the test id under pytest, the key of a report row
    case: str
    family: str
    backend: str
    device: str
    mode: str
    dtype: str
    check: str  # one of CHECKS
    clauses: list[str]  # the clauses this check's verdict speaks for
    verdict: str  # one of VERDICTS
    detail: str
    # the judge's evidence, where it has some
    expected: NotRequired[object]
    got: NotRequired[object]
    at: NotRequired[object]
    bound: NotRequired[object]
    max_abs_err: NotRequired[float]
    max_ulp: NotRequired[float]
    raised: NotRequired[dict]  # the exception the backend raised: type and message
    mutated: NotRequired[list[str]]  # arguments the call modified (MML-1.7)
    kink_choice: NotRequired[dict]
    capture: NotRequired[dict]  # graph breaks a compiler met (compiled modes of checked kernels)
    repro: NotRequired[str]  # failing records: the call in the backend's own framework
    deviation: NotRequired[dict]  # the deviation entry that lists it (Deviation.annotation)


def unexpected(r: Record) -> bool:
    """A failure no deviation entry lists: what breaks conformance."""
    return r["verdict"] in FAILING and "deviation" not in r


def known(r: Record) -> bool:
    """A failure a deviation entry lists."""
    return r["verdict"] in FAILING and "deviation" in r


def unexpected_pass(r: Record) -> bool:
    """A pass a strict deviation entry says should fail: fixed upstream, or the entry is wrong."""
    return r["verdict"] == PASS and r.get("deviation", {}).get("strict", False)


@dataclass
class Tally:
    """The verdicts of some records, counted once for every summary."""

    passed: int = 0
    known: int = 0  # failing, and listed
    new: int = 0  # failing, not listed
    unsupported: int = 0
    crash: int = 0
    timeout: int = 0
    unexpected_pass: int = 0

    @classmethod
    def of(cls, records) -> Tally:
        records = list(records)
        c = Counter(r["verdict"] for r in records)
        return cls(passed=c[PASS], known=sum(map(known, records)), new=sum(map(unexpected, records)),
                   unsupported=c[UNSUPPORTED], crash=c[CRASH], timeout=c[TIMEOUT],
                   unexpected_pass=sum(map(unexpected_pass, records)))

    @property
    def failing(self) -> int:
        return self.known + self.new
