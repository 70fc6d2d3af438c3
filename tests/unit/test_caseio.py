"""Case files and the golden store (conformance/caseio.py)."""

import json
import math
import shutil

import numpy as np
import pytest

from conformance.caseio import Case, CaseError, dumps, load_file, load_golden, verify_manifest
from conformance.reference import Problem, expect


def write(tmp_path, cases, name="cases.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"cases": cases}))
    return path


def test_round_trip_keeps_every_bit(tmp_path):
    x = np.array([[np.nan, -0.0, 2.0**-149], [np.inf, -np.inf, 0.1]])
    case = Case(id="t/specials", dtype="float64", x=x, target=np.array([1, 2]), reduction="none",
                margin=-0.0, weight=np.array([1.0, -2.0, 5e-324]), clauses=("MML-7.1",))
    case.with_expectation()
    path = tmp_path / "f.json"
    path.write_text(dumps([case]))
    (back,) = load_file(path, need_expect=True)
    assert np.array_equal(back.x, x, equal_nan=True) and np.signbit(back.x[0, 1])
    assert math.copysign(1, back.margin) == -1 and back.weight[2] == 5e-324
    for name in ("value", "value_bound", "grad", "grad_bound"):
        assert np.array_equal(getattr(back.expect, name), getattr(case.expect, name), equal_nan=True)


def test_bring_your_own_file_gets_reference_values(tmp_path):
    path = write(tmp_path, [
        {"id": "mine/seed", "x": [0.1, 0.2, 0.4, 0.8], "target": 3, "p": 1, "dtype": "float64"},
        {"id": "mine/specials", "x": [["nan", "0x1.8p+1", "-inf"]], "target": [1], "p": 2,
         "margin": "0x1p-1", "weight": [1, "inf", 2], "reduction": "none", "dtype": "float32"},
        {"id": "mine/bad-p", "x": [[1, 2]], "target": [0], "p": 3, "dtype": "float32"},
    ])
    seed, specials, bad = load_file(path)
    assert seed.reduction == "mean" and seed.margin == 1.0 and seed.weight is None
    assert seed.expect.value == expect(Problem(seed.x, seed.target, 1, 1.0, None, "mean", "float64")).value
    assert abs(seed.expect.value - 0.325) < 1e-15
    assert math.isnan(specials.expect.value[0]) and specials.margin == 0.5
    assert bad.error == "p" and bad.expect is None  # the spec decides what an invalid call must do


def test_values_are_rounded_to_the_case_dtype(tmp_path):
    (case,) = load_file(write(tmp_path, [{"id": "a/b", "x": [[0.1, 0.2]], "target": [0], "p": 1,
                                          "dtype": "float16"}]))
    assert case.x[0, 0] == float(np.float16(0.1))


@pytest.mark.parametrize("case, field", [
    ({"x": [[1.0]], "target": [0], "p": 1, "dtype": "float32"}, "'id'"),
    ({"id": "a", "target": [0], "p": 1, "dtype": "float32"}, "'x'"),
    ({"id": "a", "x": [[1.0]], "target": [0], "p": 1, "dtype": "float8"}, "'dtype'"),
    ({"id": "a", "x": [[1.0, "fish"]], "target": [0], "p": 1, "dtype": "float32"}, "'x'"),
    ({"id": "a", "x": [[1.0, 2.0], [1.0]], "target": [0, 0], "p": 1, "dtype": "float32"}, "'x'"),
    ({"id": "a", "x": [[1.0]], "target": [0.5], "p": 1, "dtype": "float32"}, "'target'"),
    ({"id": "a", "x": [[1.0]], "target": [0], "p": "1", "dtype": "float32"}, "'p'"),
    ({"id": "a", "x": [[1.0]], "target": [0], "p": 1, "margin": [1], "dtype": "float32"}, "'margin'"),
    ({"id": "a", "x": [[1.0]], "target": [0], "p": 1, "reduction": 3, "dtype": "float32"}, "'reduction'"),
    ({"id": "a", "x": [[1.0]], "target": [0], "p": 1, "dtype": "float32", "colour": 1}, "colour"),
    ({"id": "a", "x": [[1.0]], "target": [0], "p": 1, "dtype": "float32", "clauses": ["MML-99.1"]}, "MML-99.1"),
    ({"id": "a", "x": [[1.0]], "target": [0], "p": 3, "dtype": "float32", "error": "reduction"}, "'error'"),
    ({"id": "a", "x": [[1.0, 2.0]], "target": [0], "dtype": "float32", "noncontiguous": ["target"]}, "'noncontiguous'"),
    ({"id": "a", "x": [[1.0, 2.0]], "target": [0], "dtype": "float32", "noncontiguous": ["weight"]}, "'noncontiguous'"),
    ({"id": "a", "x": [[1.0]], "target": [0], "dtype": "float32", "noncontiguous": ["x"]}, "'noncontiguous'"),
])
def test_malformed_cases_name_the_case_and_field(tmp_path, case, field):
    with pytest.raises(CaseError) as info:
        load_file(write(tmp_path, [case]))
    msg = str(info.value)
    assert field in msg and ("case #0" in msg)
    if "id" in case:
        assert "'a'" in msg


def test_malformed_files(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"cases": [')
    with pytest.raises(CaseError, match="not valid JSON"):
        load_file(bad_json)
    with pytest.raises(CaseError, match="top level"):
        load_file(_raw(tmp_path, "[]"))
    dup = {"id": "a", "x": [[1.0]], "target": [0], "p": 1, "dtype": "float32"}
    with pytest.raises(CaseError, match="duplicate"):
        load_file(write(tmp_path, [dup, dup]))


def _raw(tmp_path, text):
    p = tmp_path / "raw.json"
    p.write_text(text)
    return p


def test_golden_store_loads_and_every_clause_is_cited():
    from conformance.spec import clauses

    cases = load_golden()
    cited = {c for case in cases for c in case.clauses}
    # clauses about process rather than behaviour are checked by other means
    untestable = {"MML-8.5", "MML-11.2", "MML-12.5"}
    assert set(clauses()) - cited - untestable == set()


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_tampered_golden_file_is_refused(tmp_path, damage):
    from cases import GOLDEN_DIR

    store = tmp_path / "golden"
    shutil.copytree(GOLDEN_DIR, store)
    path = store / "kinks.json"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    with pytest.raises(CaseError, match="kinks.json"):
        verify_manifest(store)
    with pytest.raises(CaseError, match="kinks.json"):
        load_golden(store)


@pytest.mark.parametrize("x, target, margin, dtype, present, absent", [
    # 0.1 - 0.25 needs 25 bits in float32; 1 - 0.25 + 0.25 is exact; 2^25 swallows the margin 1
    ([[0.0, 0.25]], [1], 0.1, "float32", {"own_term_inexact", "margin_nonint", "none"}, {"z_nan", "z_posinf"}),
    ([[0.0, 0.25]], [1], 1.0, "float32", set(), {"own_term_inexact", "margin_nonint"}),
    ([[0.0, 2.0**25]], [1], 1.0, "float32", {"own_term_inexact"}, set()),
    ([[0.0, 2.0**25]], [1], 1.0, "float64", set(), {"own_term_inexact"}),
    ([[np.inf, 0.0]], [1], 1.0, "float64", {"x_inf", "inf", "z_posinf"}, {"own_term_inexact", "z_nan"}),
    ([[np.inf, np.inf]], [1], 1.0, "float64", {"z_nan"}, {"z_posinf", "x_subnormal"}),
    ([[2.0**-130, 0.0]], [1], 1.0, "bfloat16", {"x_subnormal"}, set()),
    ([[2.0**-130, 0.0]], [1], 1.0, "float64", set(), {"x_subnormal"}),
])
def test_features_name_what_the_input_is(x, target, margin, dtype, present, absent):
    case = Case(id="t/f", dtype=dtype, x=np.array(x), target=np.array(target), margin=margin, reduction="none")
    features = case.features()
    assert present <= features and not (absent & features), features


# --- the published JSON Schema (conformance/case.schema.json) -------------------------------------

SCHEMA = json.loads((__import__("pathlib").Path(__file__).parents[2] / "conformance" / "case.schema.json").read_text())


def _validator():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    return jsonschema.Draft202012Validator(SCHEMA)


def test_golden_files_follow_the_schema():
    from conformance.caseio import golden_dir

    v = _validator()
    files = sorted(p for p in golden_dir().glob("*.json") if p.name != "MANIFEST.json")
    assert files
    for path in files:
        errors = list(v.iter_errors(json.loads(path.read_text())))
        assert not errors, f"{path.name}: {errors[0].message} at {list(errors[0].absolute_path)}"


@pytest.mark.parametrize("bad, where", [
    ({"id": "a", "dtype": "float32", "x": [[1.0]], "target": [0], "whn": 1}, "additional"),
    ({"id": "a", "dtype": "float8", "x": [[1.0]], "target": [0]}, "float8"),
    ({"id": "a", "dtype": "float32", "x": [["one"]], "target": [0]}, "one"),
    ({"id": "a", "dtype": "float32", "x": [[1.0]]}, "target"),
])
def test_schema_refuses_what_caseio_refuses(tmp_path, bad, where):
    assert list(_validator().iter_errors({"cases": [bad]}))
    with pytest.raises(CaseError):
        load_file(write(tmp_path, [bad]))


def test_noncontiguous_arguments_round_trip_and_reach_the_call_as_views(tmp_path):
    from conformance.runner import call_for

    (case,) = load_file(write(tmp_path, [{"id": "a/b", "dtype": "float32", "x": [[1.0, 2.0, 0.5]], "target": [1],
                                          "weight": [0.5, 1.0, 2.0], "noncontiguous": ["weight"]}]))
    assert case.to_json()["noncontiguous"] == ["weight"] and "noncontiguous_weight" in case.features()
    call = call_for(case, grad=True)
    assert not call.weight.flags.c_contiguous and call.x.flags.c_contiguous
    assert call.weight.tolist() == [0.5, 1.0, 2.0]
    assert np.isnan(call.weight.base).sum() == 3  # what a kernel reading it as contiguous would read


def test_p_as_a_float_and_float_targets(tmp_path):
    base = {"id": "a", "dtype": "float64", "x": [[1.0, 2.0, 0.5]], "target": [1]}
    (two,) = load_file(write(tmp_path, [{**base, "p": 2.0}]))
    assert two.p == 2 and isinstance(two.p, int) and two.error is None  # PyTorch reads p = 2.0 as 2
    (half,) = load_file(write(tmp_path, [{**base, "p": 1.5}]))
    assert half.error == "p"  # MML-10.1
    (labels,) = load_file(write(tmp_path, [{**base, "target": [1.0], "target_dtype": "float64"}]))
    assert labels.error == "target_dtype" and labels.target.dtype == np.float64  # MML-10.8 with real float labels
    for entry in ({**base, "p": 2.0}, {**base, "target": [1.0], "target_dtype": "float64"}):
        assert not list(_validator().iter_errors({"cases": [entry]}))
