"""The golden-case generator.

Each family below is one function that builds its cases with `add(...)`: like ONNX's `expect()`,
a call is at once the test, the example and the record of which spec clauses are covered. The
exact reference fills in the expected values, gradients and bounds (or the spec the expected
error); `mmconf cases generate` writes one JSON file per family and a manifest of their sha256.

Everything is deterministic: random inputs come from NumPy's legacy RandomState, whose streams
are frozen across NumPy releases, seeded from the family name.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from conformance.caseio import GENERATOR_VERSION, MANIFEST, Case, default_cotangent, dumps, sha256
from conformance.files import write_atomic
from conformance.floats import DTYPES, round_array
from conformance.spec import legacy_reduction

FAMILIES: dict = {}
REGRESSIONS = Path(__file__).with_name("regressions.json")


def family(clauses: list[str], doc: str):
    """Register a family: its name is the function's, its clauses are cited by every case in it."""

    def register(fn):
        FAMILIES[fn.__name__] = (fn, clauses, doc)
        return fn

    return register


class Family:
    def __init__(self, name: str, clauses: list[str]):
        self.name, self.clauses, self.cases = name, clauses, []
        self.rng = np.random.RandomState(zlib.crc32(name.encode()))

    def add(self, name, *, dtype, x, target, clauses=(), doc="", error=None, **kw) -> None:
        """One case. x and weight are rounded to the dtype; the reference computes the rest."""
        x = round_array(np.asarray(x, dtype=np.float64), dtype)
        if kw.get("weight") is not None:
            kw["weight"] = round_array(np.asarray(kw["weight"], dtype=np.float64), dtype)
        target = np.asarray(target, dtype=np.float64 if kw.get("target_dtype") == "float32" else np.int64)
        if kw.get("reduction", "mean") == "none" and "cotangent" not in kw and error is None:
            kw["cotangent"] = default_cotangent(np.shape(target))
        case = Case(id=f"{self.name}/{name}", dtype=dtype, x=x, target=target,
                    clauses=tuple(dict.fromkeys([*self.clauses, *clauses])), doc=doc, error=error, **kw)
        case.with_expectation()
        if case.error != error:
            raise AssertionError(f"{case.id}: meant error {error!r}, the spec says {case.error!r}")
        self.cases.append(case)

    def uniform(self, shape, low=-2.0, high=2.0) -> np.ndarray:
        return self.rng.uniform(low, high, size=shape)

    def targets(self, n: int, C: int) -> np.ndarray:
        return self.rng.randint(0, C, size=n)


# --- families -------------------------------------------------------------------------------------


@family(["MML-1.1", "MML-1.6", "MML-1.7", "MML-2.1", "MML-2.3", "MML-6.1", "MML-6.5", "MML-8.1",
         "MML-9.1", "MML-12.2", "MML-12.3"],
        "Small random batches in every dtype, p and reduction.")
def basic(f: Family):
    for dtype in DTYPES:
        for N, C in ((2, 3), (4, 5), (3, 8)):
            x, t = f.uniform((N, C)), f.targets(N, C)
            for p in (1, 2):
                for reduction in ("none", "mean", "sum"):
                    f.add(f"{N}x{C}-p{p}-{reduction}", dtype=dtype, x=x, target=t, p=p, reduction=reduction)


@family(["MML-1.2", "MML-2.1"], "A 1-D input with a 0-d target, and with a target of shape (1,).")
def unbatched(f: Family):
    for dtype in ("float32", "float64"):
        x = f.uniform(6)
        for reduction in ("none", "mean", "sum"):
            f.add(f"c6-{reduction}", dtype=dtype, x=x, target=np.int64(4), reduction=reduction)
            f.add(f"c6-target1-{reduction}", dtype=dtype, x=x, target=[4], reduction=reduction, p=2)
    f.add("seed-example", dtype="float32", x=[0.1, 0.2, 0.4, 0.8], target=np.int64(3),
          doc="The seed page's example: loss 0.325.")


@family(["MML-1.1"], "Edge batch sizes and class counts: N = 0, N = 1, C = 1, C = 2.")
def sizes(f: Family):
    for dtype in ("float32", "float64"):
        for reduction in ("none", "mean", "sum"):
            f.add(f"empty-batch-{reduction}", dtype=dtype, x=np.zeros((0, 4)), target=np.zeros(0),
                  reduction=reduction, clauses=["MML-1.4", "MML-6.3"])
        for p in (1, 2):
            f.add(f"one-sample-p{p}", dtype=dtype, x=f.uniform((1, 5)), target=[2], p=p)
            f.add(f"one-class-p{p}", dtype=dtype, x=f.uniform((3, 1)), target=[0, 0, 0], p=p,
                  reduction="none", clauses=["MML-1.3"], doc="C = 1: the sum over i != y is empty.")
            f.add(f"two-classes-p{p}", dtype=dtype, x=f.uniform((5, 2)), target=f.targets(5, 2), p=p)
    f.add("one-class-nan", dtype="float32", x=[[np.nan], [np.inf]], target=[0, 0], reduction="none",
          clauses=["MML-1.3", "MML-7.1"], doc="C = 1 with NaN / inf: still 0, no term exists.")


@family(["MML-9.2", "MML-12.2"], "Large C and large N: accumulation over many terms.")
def large(f: Family):
    for dtype in ("float32", "float16"):
        f.add("many-classes", dtype=dtype, x=f.uniform((1, 32768), -1, 1), target=[12345],
              doc="C = 32768: one row accumulates 32767 terms.")
    f.add("many-samples", dtype="float32", x=f.uniform((4096, 4)), target=f.targets(4096, 4), p=2,
          doc="N = 4096: the mean accumulates over every sample.")


@family(["MML-3.1", "MML-4.1", "MML-5.1", "MML-5.2", "MML-6.1", "MML-6.2"],
        "p x margin x weight x reduction, zero and negative margins and weights included.")
def options(f: Family):
    margins = {"m1": 1.0, "m0": 0.0, "mneg": -0.5, "m2.5": 2.5, "m0.1": 0.1}
    x, t = f.uniform((4, 5)), np.array([0, 4, 2, 2])
    weights = {
        "noweight": None,
        "weight": f.uniform(5, 0.25, 3.0),
        "zeroweight": np.array([0.0, 1.5, 2.0, 0.0, 0.75]),
        "negweight": np.array([-1.0, 0.5, -2.0, 1.0, -0.25]),
    }
    for dtype in ("float32", "float64"):
        k = 0
        for p in (1, 2):
            for wname, w in weights.items():
                for reduction in ("none", "mean", "sum"):
                    mname = list(margins)[k % len(margins)]
                    k += 1
                    clauses = ["MML-5.4"] if wname in ("zeroweight", "negweight") else []
                    clauses += ["MML-4.2"] if mname == "m0.1" else []
                    clauses += ["MML-2.2"] if margins[mname] <= 0 else []
                    f.add(f"p{p}-{mname}-{wname}-{reduction}", dtype=dtype, x=x, target=t, p=p,
                          margin=margins[mname], weight=w, reduction=reduction, clauses=clauses)


@family(["MML-8.2", "MML-8.3"], "Exact kinks (z == 0), ties and duplicate maxima, built from dyadics.")
def kinks(f: Family):
    for dtype in DTYPES:
        # margin 1: x[i] = x[y] - 1 is a kink; margin 0: every tie with the target is one
        f.add("margin1-kink", dtype=dtype, x=[[0.5, 1.5, 0.25, 0.5]], target=[1], reduction="sum",
              doc="z = 1 - 1.5 + 0.5 = 0 for classes 0 and 3.")
        f.add("margin0-ties", dtype=dtype, x=[[2.0, 2.0, 2.0, -1.0], [0.75, 0.75, 1.0, 0.75]],
              target=[0, 1], margin=0.0, reduction="mean", doc="Ties with the target under margin 0.")
        f.add("duplicate-maxima", dtype=dtype, x=[[3.0, 1.0, 3.0, 3.0, 2.0]], target=[0], margin=0.0,
              doc="The target shares the maximum with two competitors.")
        f.add("kink-weighted", dtype=dtype, x=[[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]], target=[0, 2],
              weight=[2.0, 0.5, -1.0], reduction="none", doc="Kinks under positive and negative weights.")
        f.add("kink-p2", dtype=dtype, x=[[0.5, 1.5, 0.25, 0.5]], target=[1], p=2, reduction="sum",
              doc="p = 2 at z == 0: the derivative is 0, no choice.")


@family(["MML-12.1", "MML-4.2"], "Catastrophic cancellation: |x| much larger than the margin.")
def cancellation(f: Family):
    scale = {"float16": 1e3, "bfloat16": 1e5, "float32": 1e6, "float64": 1e14}
    for dtype in DTYPES:
        x = scale[dtype] + f.uniform((3, 6), -4, 4)
        t = f.targets(3, 6)
        for p in (1, 2):
            f.add(f"big-offset-p{p}", dtype=dtype, x=x, target=t, p=p, reduction="none")


@family(["MML-9.3", "MML-12.4"], "Overflow: squares that overflow the dtype while the loss does not.")
def overflow(f: Family):
    f.add("f16-square-overflows", dtype="float16", x=[[0.0] + [-300.0] * 14 + [300.0]], target=[0], p=2,
          doc="z = 301 for the last class: 301^2 = 90601 > 65504, but the loss 90601/16 is finite.")
    f.add("f16-loss-overflows", dtype="float16", x=[[0.0, 400.0, 400.0]], target=[0], p=2,
          doc="The exact loss 2*401^2/3 = 107200.7 overflows float16: inf is the right answer.")
    f.add("f16-near-threshold", dtype="float16", x=[[0.0, 442.0, 0.0]], target=[0], p=2, reduction="sum",
          doc="(443^2 + 1)/3 = 65416.7: finite, just below the float16 overflow threshold.")
    f.add("f32-square-overflows", dtype="float32", x=[[0.0, 2e19, -1.0, -1.0]], target=[0], p=2,
          doc="(2e19)^2 = 4e38 overflows float32, the loss 1e38 does not: both conform (MML-9.3).")
    f.add("f64-square-overflows", dtype="float64", x=[[0.0, 2e154, -1.0, -1.0]], target=[0], p=2,
          doc="(2e154)^2 overflows float64; the loss does not.")


@family(["MML-12.1", "MML-7.5"], "Subnormal inputs and results, and signed zeros.")
def subnormal(f: Family):
    tiny = {"float16": 2.0**-24, "bfloat16": 2.0**-133, "float32": 2.0**-149, "float64": 2.0**-1074}
    for dtype in DTYPES:
        s = tiny[dtype]
        x = np.array([[3 * s, 0.0, -5 * s, 17 * s], [-0.0, 0.0, 8 * s, -8 * s]])
        f.add("subnormal-inputs", dtype=dtype, x=x, target=[0, 3], margin=64 * s, reduction="none",
              doc="Inputs and margin a few subnormal steps from zero.")
        f.add("subnormal-inputs-p2", dtype=dtype, x=x, target=[0, 3], margin=64 * s, p=2, reduction="sum",
              doc="Squares of subnormals underflow to zero.")
        f.add("signed-zeros", dtype=dtype, x=[[-0.0, 0.0, -0.0], [0.0, -0.0, 0.0]], target=[0, 1],
              margin=-0.0, reduction="none", doc="Zero margin and zero scores of both signs.")
        # scores from near overflow down to a subnormal (float64: more binades than its normal range)
        big, r = {"float16": (2.0**14, 2.0**-6), "float64": (2.0**1022, 2.0**-500)}.get(dtype, (2.0**126, 2.0**-60))
        f.add("wide-rows", dtype=dtype, x=[[0.0, 3 * s, -big, big / 2], [0.0, 3 * s, -big, 0.0]], target=[0, 0],
              margin=0.0, reduction="none", clauses=["MML-8.1"],
              doc="Rows spanning the whole range: the tiny positive score keeps its slope and, in row 2, its value.")
        f.add("wide-rows-p2", dtype=dtype, x=[[0.0, r, -big, -r], [r, -big, 0.0, -r]], target=[0, 2], p=2,
              weight=[3.0, 1.0, 0.5, 1.0], margin=0.0, reduction="sum", clauses=["MML-8.1", "MML-5.1"],
              doc="The same with p = 2 and a weight: a small score whose square is the whole loss.")


@family([], "NaN and infinities at the target, at competitors, in the weight and in the margin.")
def special(f: Family):
    nan, inf = np.nan, np.inf
    base = [[0.5, -0.25, 1.0, 0.0], [1.5, 0.25, -1.0, 2.0]]
    where = {  # name: (element, value, clauses)
        "nan-target": ((0, 1), nan, ["MML-7.1", "MML-8.4"]),
        "nan-other": ((0, 2), nan, ["MML-7.1", "MML-8.4"]),
        "inf-target": ((0, 1), inf, ["MML-7.2", "MML-8.4"]),
        "neginf-target": ((0, 1), -inf, ["MML-7.2", "MML-8.4"]),
        "inf-other": ((0, 2), inf, ["MML-7.2", "MML-8.4"]),
        "neginf-other": ((0, 3), -inf, ["MML-7.2", "MML-8.4"]),
    }
    for dtype in ("float32", "float16"):
        for name, ((n, i), v, clauses) in where.items():
            x = np.array(base)
            x[n, i] = v
            for p in (1, 2):
                f.add(f"{name}-p{p}", dtype=dtype, x=x, target=[1, 3], p=p, reduction="none", clauses=clauses)
            f.add(f"{name}-mean", dtype=dtype, x=x, target=[1, 3], reduction="mean", clauses=[*clauses, "MML-7.4"])
        x = np.array(base)
        x[0, 1] = x[0, 2] = inf
        f.add("inf-minus-inf", dtype=dtype, x=x, target=[1, 3], reduction="none", clauses=["MML-7.2", "MML-8.4"],
              doc="x[y] = x[i] = +inf: z = inf - inf is NaN.")
        x = np.array(base)
        x[0, 0], x[1, 2] = inf, -inf
        f.add("inf-sample-sum", dtype=dtype, x=x, target=[1, 3], reduction="sum", clauses=["MML-7.4"],
              doc="Sample 0 is +inf, sample 1 finite (its -inf competitor is inactive): the sum is +inf.")
        x = np.array(base)
        x[0, 0], x[1, 1] = inf, inf
        f.add("pos-and-neg-infinite-samples", dtype=dtype, x=x, target=[1, 3], weight=[1, 1, 1, -1],
              reduction="sum", clauses=["MML-7.4"], doc="Sample 0 is +inf, sample 1 is -inf (negative weight): NaN.")
        for mname, m, clause in (("nan", nan, "MML-7.1"), ("inf", inf, "MML-7.2"), ("neginf", -inf, "MML-7.2")):
            f.add(f"margin-{mname}", dtype=dtype, x=base, target=[1, 3], margin=m, reduction="none",
                  clauses=[clause, "MML-8.4"])
            f.add(f"margin-{mname}-p2", dtype=dtype, x=base, target=[1, 3], margin=m, p=2, reduction="none",
                  clauses=[clause, "MML-8.4"])
        for wname, wv, clause in (("nan", nan, "MML-7.1"), ("inf", inf, "MML-7.3"), ("neginf", -inf, "MML-7.3")):
            f.add(f"weight-{wname}", dtype=dtype, x=base, target=[1, 3], weight=[1, wv, 1, 1],
                  reduction="none", clauses=[clause, "MML-2.4", "MML-8.4"],
                  doc="The weight of sample 0's target class is special; an inactive term times inf is NaN.")
        f.add("weight-inf-inactive-term", dtype=dtype, x=[[0.5, -0.25, -5.0, 0.0], base[1]], target=[1, 3],
              weight=[1, inf, 1, 1], reduction="none", clauses=["MML-7.3", "MML-2.4", "MML-8.4"],
              doc="An infinite w[y] times the inactive term of class 2 (z = -3.75) is NaN, in value and gradient.")
        f.add("zero-weight-inf-term", dtype=dtype, x=[[0.0, inf, 1.0]], target=[0], weight=[0, 1, 1],
              reduction="none", clauses=["MML-7.3", "MML-2.4"], doc="0 * inf is NaN (MML-7.3).")


@family(["MML-11.1", "MML-5.3"], "Cases where the seed page's reading (weight inside the power) differs.")
def errata(f: Family):
    x, t = [[0.5, -0.5, 0.25, 1.0], [0.0, 1.0, 2.0, -1.0]], [0, 2]
    for dtype in ("float32", "float64"):
        f.add("p2-weight2", dtype=dtype, x=x, target=t, p=2, weight=[2.0, 1.0, 2.0, 1.0], reduction="none",
              doc="p = 2: the kernel scales by w, the seed page by w^2.")
        f.add("p2-weight-half", dtype=dtype, x=x, target=t, p=2, weight=[0.5, 1.0, 0.5, 1.0])
        f.add("p1-negative-weight", dtype=dtype, x=x, target=t, weight=[-1.0, 1.0, -2.0, 1.0],
              reduction="none", doc="Negative weight: the seed's reading switches the active terms.")
        f.add("p2-negative-weight", dtype=dtype, x=x, target=t, p=2, weight=[-1.0, 1.0, -0.5, 1.0],
              reduction="sum")


@family(["MML-6.4"], "The deprecated size_average / reduce arguments.")
def legacy(f: Family):
    x, t = f.uniform((3, 4)), f.targets(3, 4)
    for sa in (None, True, False):
        for red in (None, True, False):
            if sa is None and red is None:
                continue
            name = f"size_average-{str(sa).lower()}-reduce-{str(red).lower()}"
            f.add(name, dtype="float32", x=x, target=t, legacy={"size_average": sa, "reduce": red},
                  reduction=legacy_reduction(sa, red))


@family(["MML-1.5"], "int32 targets (optional: rejecting them is a capability gap).")
def targets(f: Family):
    for dtype in ("float32", "float64"):
        f.add("int32-target", dtype=dtype, x=f.uniform((3, 4)), target=[0, 3, 1], target_dtype="int32")


@family([], "Invalid input: every call here must raise an error (MML-10).")
def invalid(f: Family):
    x, t = [[0.5, 1.0, -1.0], [0.0, 2.0, 1.0]], [0, 2]
    for dtype in ("float32", "float64"):

        def bad(name, kind, clause, dtype=dtype, **kw):
            args = {"x": x, "target": t, **kw}
            f.add(name, dtype=dtype, error=kind, clauses=[clause], **args)

        bad("p0", "p", "MML-10.1", p=0)
        bad("p3", "p", "MML-10.1", p=3)
        bad("target-too-large", "target_range", "MML-10.2", target=[0, 3])
        bad("target-negative", "target_range", "MML-10.2", target=[-1, 2])
        bad("target-too-large-1d", "target_range", "MML-10.2", x=[0.5, 1.0, 2.0], target=np.int64(3))
        bad("target-too-large-none", "target_range", "MML-10.9", target=[0, 3], reduction="none",
            doc="A traced mode may answer NaN for sample 1, but sample 0 stays finite.")
        bad("input-0d", "input_rank", "MML-10.3", x=np.float64(1.0), target=np.int64(0))
        bad("input-3d", "input_rank", "MML-10.3", x=np.ones((2, 2, 3)), target=[0, 1])
        bad("target-too-long", "target_shape", "MML-10.4", target=[0, 1, 2])
        bad("target-2d", "target_shape", "MML-10.4", target=[[0], [2]])
        bad("weight-too-short", "weight_shape", "MML-10.5", weight=[1.0, 1.0])
        bad("weight-2d", "weight_shape", "MML-10.5", weight=[[1.0, 1.0, 1.0]])
        bad("reduction-unknown", "reduction", "MML-10.6", reduction="average")
        bad("no-classes", "no_classes", "MML-10.7", x=np.zeros((2, 0)))
        bad("float-target", "target_dtype", "MML-10.8", target_dtype="float32")


@family([], "Real upstream bugs of this op, each with the reporter's input: the id in its doc, run on every device.")
def upstream(f: Family):
    # pytorch/pytorch #88648, #88724, #19229: out-of-range targets were not checked on CUDA (a
    # loss came back, or an out-of-bounds read); every device must raise
    x35 = f.uniform((3, 5))
    for dtype in ("float32", "float64"):
        f.add("torch-88648-target-equals-C", dtype=dtype, x=x35, target=[1, 0, 5], error="target_range",
              clauses=["MML-10.2"], doc="pytorch/pytorch#88648: input (3, 5), target [1, 0, 5]; CUDA returned "
              "a loss (fixed by PR #89008's kernel assert)")
        f.add("torch-88724-target-minus-one", dtype=dtype, x=x35, target=[-1, -1, -1], error="target_range",
              clauses=["MML-10.2"], doc="pytorch/pytorch#88724: input (3, 5), targets -1; an out-of-bounds "
              "read on CUDA under compute-sanitizer")
        f.add("torch-19229-one-class", dtype=dtype, x=f.uniform((3, 1)), target=[0, 4, 2], error="target_range",
              clauses=["MML-10.2"], doc="pytorch/pytorch#19229: input (3, 1), targets up to 4; CPU raised, "
              "CUDA did not")
    # pytorch/pytorch #146790: a segfault in multi_margin_loss_backward with an empty grad_output
    for dtype in ("float32", "float64"):
        for reduction in ("none", "mean", "sum"):
            f.add(f"torch-146790-empty-backward-{reduction}", dtype=dtype, x=np.zeros((0, 4)),
                  target=np.zeros(0, dtype=np.int64), reduction=reduction, clauses=["MML-6.3", "MML-8.1"],
                  doc="pytorch/pytorch#146790: the backward of an empty batch (an empty grad_output) "
                  "segfaulted; the gradient is an empty (0, 4) array")
    # pytorch/pytorch PR #104578: the decomposition's gradient was wrong with a weight
    x45, t4, w5 = f.uniform((4, 5)), f.targets(4, 5), f.uniform(5, 0.25, 2.0)
    for p in (1, 2):
        for reduction in ("none", "mean", "sum"):
            f.add(f"torch-104578-weighted-grad-p{p}-{reduction}", dtype="float64", x=x45, target=t4, weight=w5,
                  p=p, reduction=reduction, clauses=["MML-5.1", "MML-8.1"],
                  doc="pytorch/pytorch PR #104578: torch/_decomp's multi_margin_loss gradient with a weight")
    # PaddlePaddle PR #73739: the weight was applied inside the power (the seed page's reading)
    x52, t5, w2 = f.uniform((5, 2)), f.targets(5, 2), f.uniform(2, 0.25, 2.0)
    for p in (1, 2):
        f.add(f"paddle-73739-weight-p{p}-mean", dtype="float64", x=x52, target=t5, weight=w2, p=p,
              clauses=["MML-5.1", "MML-11.1"], doc="PaddlePaddle PR #73739: float64 input (5, 2), weight (2,), "
              "mean; p = 1 as reported, p = 2 where inside and after the power differ")
    # pytorch/pytorch PR #104852: the CPU kernel read a non-contiguous weight as if it were contiguous
    x46, t4, w6 = f.uniform((4, 6)), f.targets(4, 6), f.uniform(6, 0.25, 2.0)
    for dtype in ("float32", "float64"):
        for p, reduction in ((1, "mean"), (2, "none")):
            f.add(f"torch-104852-strided-weight-p{p}-{reduction}", dtype=dtype, x=x46, target=t4, weight=w6, p=p,
                  reduction=reduction, noncontiguous=("weight",), clauses=["MML-1.8", "MML-5.1", "MML-8.1"],
                  doc="pytorch/pytorch PR #104852: input (4, 6), a weight that is every other element of a "
                  "buffer; the CPU kernel read it as if it were contiguous")
        f.add("torch-104852-strided-input-and-weight", dtype=dtype, x=x46, target=t4, weight=w6, reduction="sum",
              noncontiguous=("x", "weight"), clauses=["MML-1.8", "MML-5.1", "MML-8.1"],
              doc="pytorch/pytorch PR #104852, with the input a strided view too")


@family([], "Cases that fuzzing found (cases/regressions.json, in the bring-your-own format).")
def regressions(f: Family):
    from conformance.caseio import load_file

    for case in load_file(REGRESSIONS):
        if not case.id.startswith("regressions/"):
            raise ValueError(f"{REGRESSIONS}: case ids must start with 'regressions/', got {case.id!r}")
        f.cases.append(case)


# --- the store ------------------------------------------------------------------------------------


def generate() -> dict[str, list[Case]]:
    out = {}
    for name, (fn, clauses, _) in FAMILIES.items():
        f = Family(name, clauses)
        fn(f)
        out[name] = f.cases
    return out


def write_store(directory: Path) -> dict:
    """Write every family file and the manifest into `directory`; returns the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, cases in generate().items():
        header = {"family": name, "doc": FAMILIES[name][2], "generator_version": GENERATOR_VERSION}
        path = directory / f"{name}.json"
        write_atomic(path, dumps(cases, header))
        files[path.name] = sha256(path)
    for stale in directory.glob("*.json"):
        if stale.name not in files and stale.name != MANIFEST:
            stale.unlink()
    manifest = {"generator_version": GENERATOR_VERSION, "files": files}
    write_atomic(directory / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest
