"""Differential fuzzing: random cases through a backend, judged against the exact reference by the
same verdict code as the golden cases.

Hypothesis draws the cases (shapes down to N = 0 and C = 1, every dtype, p, margins, weights,
reductions, special values, dyadic values that land on kinks, non-contiguous views) and shrinks a failing one to a
minimal case, printed as a case-file entry ready for `cases/regressions.json`. A mismatch that a
listed deviation of the backend matches (by mechanism: its `when` features, see
conformance.deviations) is expected, not reported; a pass that a strict entry matches is reported
like a mismatch: the entry's features are wider than the deviation.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .caseio import Case, default_cotangent
from .deviations import Deviations
from .floats import DTYPES, FORMATS, encode, encode_array, round_array
from .record import FAILING, PASS
from .runner import Session, plan

SPECIALS = (np.nan, np.inf, -np.inf)
PROGRESS_EVERY = 250


@st.composite
def values(draw, dtype: str, n: int, specials: bool):
    """n floats of `dtype`: mostly small dyadics (ties and kinks), some wide-range ones, some
    subnormals, and with `specials` an occasional NaN or infinity."""
    f = FORMATS[dtype]
    tiny = 2.0 ** (f.emin - f.precision + 1)
    elem = st.one_of(
        st.integers(-16, 16).map(lambda k: k / 4),
        st.floats(-4, 4, allow_nan=False, width=32),
        st.floats(-f.max_finite ** 0.25, f.max_finite ** 0.25, allow_nan=False),
        st.integers(-64, 64).map(lambda k: k * tiny),
        *([st.sampled_from(SPECIALS)] if specials else []),
    )
    return round_array(np.array(draw(st.lists(elem, min_size=n, max_size=n)), dtype=np.float64), dtype)


@st.composite
def cases(draw, dtypes=DTYPES) -> Case:
    dtype = draw(st.sampled_from(list(dtypes)))
    unbatched = draw(st.booleans()) and draw(st.booleans())
    N = 1 if unbatched else draw(st.integers(0, 5))
    C = draw(st.integers(1, 7))
    specials = draw(st.integers(0, 3)) == 0
    x = draw(values(dtype, N * C, specials)).reshape((C,) if unbatched else (N, C))
    target = np.array(draw(st.lists(st.integers(0, C - 1), min_size=N, max_size=N)), dtype=np.int64)
    if unbatched:
        target = target.reshape(())
    weight = draw(st.one_of(st.none(), values(dtype, C, specials)))
    margin = draw(st.one_of(st.sampled_from([1.0, 0.0, -0.5, 0.1, 2.5]), st.floats(-3, 3, width=32),
                            st.sampled_from(SPECIALS) if specials else st.just(1.0)))
    reduction = draw(st.sampled_from(["none", "mean", "sum"]))
    # now and then an argument as a non-contiguous view (MML-1.8); shrinking makes it contiguous
    viewable = [name for name, a in (("x", x), ("weight", weight)) if a is not None and a.shape[-1] >= 2]
    noncontiguous = tuple(name for name in viewable if draw(st.integers(0, 3)) == 3)
    case = Case(id="fuzz/?", dtype=dtype, x=x, target=target, p=draw(st.sampled_from([1, 2])),
                margin=float(margin), weight=weight, reduction=reduction, noncontiguous=noncontiguous,
                cotangent=default_cotangent(np.shape(target)) if reduction == "none" else None)
    digest = hashlib.sha1(json.dumps(case.to_json(), sort_keys=True).encode()).hexdigest()[:10]
    case.id = f"fuzz/{digest}"
    return case.with_expectation()


def case_entry(case: Case) -> dict:
    """A bring-your-own case-file entry for the case (no expectations: the reference recomputes them)."""
    d = {"id": case.id.replace("fuzz/", "regressions/"), "dtype": case.dtype, "x": encode_array(case.x),
         "target": np.asarray(case.target).tolist(), "p": case.p, "margin": encode(case.margin),
         "weight": None if case.weight is None else encode_array(case.weight), "reduction": case.reduction}
    if case.x.size == 0:
        d["x_shape"] = list(case.x.shape)
    if case.cotangent is not None:
        d["cotangent"] = encode_array(case.cotangent)
    if case.noncontiguous:
        d["noncontiguous"] = list(case.noncontiguous)
    return d


class Mismatch(AssertionError):
    def __init__(self, case: Case, records: list[dict]):
        super().__init__(f"{case.id}: " + "; ".join(f"{r['mode']} {r['check']}: {r['detail']}" for r in records))
        self.case, self.records = case, records


def fuzz(backend: str, examples: int = 100, seed: int | None = 0, session: Session | None = None,
         devices=None, modes=None, progress=None) -> dict:
    """Fuzz one backend; returns {'examples': n, 'explained': k, 'failure': None or {...}}.
    `progress(stats)` is called every PROGRESS_EVERY examples (a soak runs for hours)."""
    if session is None:  # one of our own, closed (its workers and their logs gone) when done
        session = Session()
        try:
            return fuzz(backend, examples, seed, session, devices, modes, progress)
        finally:
            session.close()
    desc = session.describe(backend)
    if "missing" in desc:
        return {"backend": backend, "missing": desc["missing"]}
    deviations = Deviations.load()
    stats = {"examples": 0, "explained": 0}
    dtypes = sorted({d for dev, ds in desc["dtypes"].items() if not devices or dev in devices for d in ds})

    def check(case: Case) -> None:
        stats["examples"] += 1
        if progress and stats["examples"] % PROGRESS_EVERY == 0:
            progress(stats)
        bad = []
        features = case.features()
        for device, mode, _ in plan(desc, [case], devices, modes):
            for r in session.run_case(backend, device, mode, case):
                entry = deviations.match(r, features)
                if r["verdict"] in FAILING and entry:
                    stats["explained"] += 1
                elif r["verdict"] in FAILING:
                    bad.append(r)
                elif r["verdict"] == PASS and entry and entry.strict:
                    bad.append({**r, "detail": f"passed, but the strict deviation entry {entry.label} lists it"})
        if bad:
            raise Mismatch(case, bad)

    test = settings(max_examples=examples, deadline=None, database=None,
                    phases=[Phase.generate, Phase.shrink], report_multiple_bugs=False,
                    suppress_health_check=list(HealthCheck))(given(cases(dtypes))(check))
    if seed is not None:
        from hypothesis import seed as hypothesis_seed

        test = hypothesis_seed(seed)(test)
    failure = None
    try:
        test()
    except Mismatch as m:
        failure = {"case": case_entry(m.case), "records": m.records}
    return {"backend": backend, **stats, "failure": failure}
