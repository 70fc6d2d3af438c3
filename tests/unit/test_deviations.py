"""The expected-deviation matcher: entries match records by mechanism (where, check, the case's
features), never by golden id; stale detection; the merge of several runs' stale entries."""

import numpy as np
import pytest

from conformance import report
from conformance.caseio import Case, load_golden
from conformance.deviations import Deviation, DeviationError, Deviations, _entry


def case(id_="mine/a", x=((0.5, 1.0, 2.0), (1.0, 0.0, 0.25)), target=(1, 2), dtype="float32", **kw) -> Case:
    return Case(id=id_, dtype=dtype, x=np.array(x, dtype=np.float64), target=np.array(target), **kw)


def record(case_: Case, backend="torch", device="cpu", mode="eager", check="value", verdict="fail") -> dict:
    return {"id": f"{backend}-{device}-{mode}-{case_.dtype}-{case_.id}", "case": case_.id, "dtype": case_.dtype,
            "backend": backend, "device": device, "mode": mode, "check": check, "verdict": verdict}


def entry(**kw) -> Deviation:
    item = {"where": "torch-cpu-eager-*", "clause": "MML-7.1", "reason": "r", **kw}
    return _entry("torch", item, "test entry")


NAN = case(x=((np.nan, 1.0, 2.0), (1.0, 0.0, 0.25)))  # a NaN score: z is NaN in row 0 (features: z_nan)


def test_matches_by_features_not_by_id():
    e = entry(when=["z_nan"], check="value")
    assert e.matches(record(NAN), NAN.features())
    assert not e.matches(record(case()), case().features())  # no NaN: no match, whatever the id
    renamed = case(id_="someone-elses/name", x=NAN.x)
    assert e.matches(record(renamed), renamed.features())


def test_where_check_and_negated_features():
    e = entry(when=["z_nan", "!weight"], check=["value", "grad"])
    f = NAN.features()
    assert e.matches(record(NAN, check="grad"), f)
    assert not e.matches(record(NAN, check="error"), f)
    assert not e.matches(record(NAN, mode="compile"), f)
    assert not e.matches(record(NAN, device="cuda"), f)
    assert not e.matches(record(NAN, backend="paddle"), f)  # another backend's record, whatever its prefix
    weighted = case(x=NAN.x, weight=np.ones(3))
    assert not e.matches(record(weighted), weighted.features())
    dtyped = entry(where="torch-cpu-*-float64", when=["z_nan"])
    assert not dtyped.matches(record(NAN), f)
    assert dtyped.matches(record(case(x=NAN.x, dtype="float64")), case(x=NAN.x, dtype="float64").features())


def test_mechanism_features():
    assert "x_0d" in case(x=0.5, target=0).features()
    assert "margin_negative" in case(margin=-3.14).features() and "margin_negative" not in case(margin=0.0).features()
    assert {"xy_inf", "xy_nan"} <= case(x=((np.inf, 1.0, 2.0), (1.0, 0.0, np.nan)), target=(0, 2)).features()
    assert "xy_inf" not in case(x=((np.inf, 1.0, 2.0), (1.0, 0.0, 0.5)), target=(1, 2)).features()  # not a target score
    assert "wy_inf" in case(weight=np.array([1.0, np.inf, 1.0])).features()  # target 1 has the infinite weight
    assert "wy_inf" not in case(weight=np.array([np.inf, 1.0, 1.0])).features()
    # float32 constants: 1/3 is inexact in float32, 1/4 exact; a margin of 0.1 is inexact
    assert "margin_term_f32_inexact" in case(dtype="float64").features()
    assert "margin_term_f32_inexact" not in case(x=np.zeros((2, 4)), dtype="float64").features()
    assert "margin_f32_inexact" in case(margin=0.1).features() and "margin_f32_inexact" not in case().features()
    assert "target_column" in case(target=((1,), (2,))).with_expectation().features()
    assert "target_column" not in case(target=((1, 0), (2, 0))).with_expectation().features()


def test_entry_validation():
    with pytest.raises(DeviationError, match="'id'.*gone.*'where'"):
        _entry("torch", {"id": "torch-cpu-*", "clause": "MML-7.1", "reason": "r"}, "e")
    with pytest.raises(DeviationError, match="'where' is backend-device-mode-dtype"):
        entry(where="torch-cpu-eager-float32-special/nan-*")
    with pytest.raises(DeviationError, match="unknown feature 'z_nam'"):
        entry(when=["z_nam"])
    with pytest.raises(DeviationError, match="'examples' must be a list of strings"):
        entry(examples="special/nan")
    with pytest.raises(DeviationError, match="unknown key"):
        entry(whn=["z_nan"])


def test_shipped_entries_match_their_examples():
    """Each golden example of each shipped entry is a case the entry matches (for some dtype its
    where admits): examples illustrate the mechanism, and a feature that drifts breaks this."""
    golden: dict = {}
    for c in load_golden():
        golden.setdefault(c.id, []).append(c)
    entries = Deviations.load().entries
    assert sum(bool(e.examples) for e in entries) >= len(entries) // 2
    for e in entries:
        for example in e.examples:
            assert example in golden, f"{e.backend}: {e.label}: example {example} is not a golden case"
            device, mode = e.where.split("-")[1:3]
            mode = "eager" if mode == "*" else mode
            matched = [c for c in golden[example] for check in e.check or ("value", "grad", "error")
                       if e.matches(record(c, e.backend, device, mode, check), c.features())]
            assert matched, f"{e.backend}: {e.label} does not match its example {example}"


def test_stale_entries():
    e_nan, e_empty = entry(when=["z_nan"], check="value"), entry(when=["empty"], check="value")
    other = _entry("paddle", {"where": "paddle-cpu-*", "when": ["z_nan"], "clause": "MML-7.1", "reason": "r"}, "e")
    devs = Deviations([e_nan, e_empty, other])
    cases = {(c.id, c.dtype): c for c in (NAN,)}
    failing = [record(NAN)]
    assert devs.stale(failing, cases) == [e_empty]  # covered, explains nothing; paddle was not run
    assert devs.stale([record(NAN, verdict="pass")], cases) == [e_nan, e_empty]  # matched, but no failure
    assert devs.stale([{k: v for k, v in r.items() if k != "verdict"} for r in failing], cases) == [e_empty]  # a plan
    assert devs.stale([record(NAN, mode="compile")], cases) == []  # nothing of its where ran


def test_annotate_and_unexpected_pass():
    strict, loose = entry(when=["z_nan"], check="value"), entry(when=["z_nan"], check="grad", strict=False)
    devs = Deviations([strict, loose])
    plain = case(id_="mine/plain")
    recs = [record(NAN, verdict="pass"), record(NAN, check="grad", verdict="pass"), record(plain)]
    devs.annotate(recs, {(NAN.id, NAN.dtype): NAN, (plain.id, plain.dtype): plain})
    assert recs[0]["deviation"]["label"] == strict.label and recs[0]["deviation"]["strict"]
    assert not recs[1]["deviation"]["strict"] and "deviation" not in recs[2]
    from conformance.record import Tally

    t = Tally.of(recs)
    assert (t.passed, t.unexpected_pass, t.new, t.known) == (2, 1, 1, 0)


def test_merge_keeps_entries_stale_only_where_every_covering_run_says_so():
    stale = {"backend": "torch", "where": "torch-cpu-eager-*", "when": ["empty"], "check": ["value"],
             "clause": "MML-6.3", "label": "torch-cpu-eager-* when empty [value]"}
    torch_rec = {**record(NAN), "clauses": ["MML-7.1"]}
    paddle_rec = {**record(NAN, backend="paddle"), "clauses": ["MML-7.1"]}
    doc = lambda recs, st: {"records": recs, "backends": {}, "stale_deviations": st}  # noqa: E731
    assert report.merge([doc([torch_rec], [stale]), doc([paddle_rec], [])])["stale_deviations"] == [stale]
    assert report.merge([doc([torch_rec], [stale]), doc([torch_rec], [])])["stale_deviations"] == []
    later = {**torch_rec, "verdict": "pass"}
    merged = report.merge([doc([torch_rec], []), doc([later], [])])
    assert [r["verdict"] for r in merged["records"]] == ["pass"]  # a record seen twice: the later run's
