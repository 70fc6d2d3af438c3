"""Cases: the in-memory form, the JSON case-file form, and the golden store with its manifest.

A case file is `{"cases": [ {...}, ... ]}`; README.md documents the fields. Floats are JSON numbers
or strings: "nan", "inf", "-inf" or exact hex ("0x1.8p+1"). Golden files carry, beside each case,
what the exact reference expects ("expect"); a bring-your-own file needs no expectations, the
harness computes them. Nothing here imports a framework, and nothing is ever unpickled.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import spec
from .floats import DTYPES, check_nesting, decode, decode_array, encode, encode_array, fmt, representable, round_array
from .reference import Expectation, Problem, expect

GENERATOR_VERSION = "1"

# The words of Case.features, for deviation lists; "invalid:<kind>" (spec.ERROR_CLAUSES) besides.
FEATURES = (*DTYPES, "p1", "p2", "none", "mean", "sum", "x_nan", "x_inf", "weight_nan", "weight_inf",
            "margin_nan", "margin_inf", "margin_posinf", "nan", "inf", "x_subnormal", "z_nan", "z_posinf",
            "w_nonfinite_inactive", "weight", "negative_weight", "zero_weight", "margin_nonpositive",
            "margin_nonint", "own_term_inexact", "unbatched", "target_0d", "empty", "one_class", "kink",
            "near_kink", "underflowing_scale", "int32_target", "float32_target", "float64_target", "legacy",
            # mechanisms of vendors' deviations (conformance/deviations/*.toml)
            "x_0d", "target_column", "margin_negative", "xy_nan", "xy_inf", "wy_nan", "wy_inf", "margin_f32_inexact",
            "margin_term_f32_inexact", "target_negative", "noncontiguous_x", "noncontiguous_weight")
TARGET_DTYPES = ("int64", "int32", "float32", "float64")  # floats: the MML-10.8 error cases


def default_cotangent(shape) -> np.ndarray:
    """The golden cases' cotangent for reduction 'none': small dyadic values, exact in every dtype,
    of both signs, so that a backward pass that ignores or misplaces it is caught."""
    pattern = np.array([1.0, -0.5, 2.0, 0.75, -1.25, 0.5])
    return np.resize(pattern, int(np.prod(shape))).reshape(shape)


class CaseError(ValueError):
    """A malformed case or case file. The message names the file, the case and the field."""


@dataclass
class Case:
    id: str  # "<family>/<name>"; unique together with dtype
    dtype: str
    x: np.ndarray  # float64 holding values of `dtype` exactly
    target: np.ndarray
    p: int = 1
    margin: float = 1.0
    weight: np.ndarray | None = None
    reduction: str = "mean"
    target_dtype: str = "int64"
    legacy: dict | None = None  # {"size_average": ..., "reduce": ...} instead of reduction (MML-6.4)
    cotangent: np.ndarray | None = None  # reduction 'none': the output's cotangent for the gradient
    noncontiguous: tuple = ()  # "x", "weight": passed as non-contiguous views (MML-1.8)
    clauses: tuple = ()
    doc: str = ""
    error: str | None = None  # the MML-10 kind of an invalid call
    expect: Expectation | None = field(default=None, repr=False)

    @property
    def family(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def key(self) -> str:
        return f"{self.dtype}-{self.id}"

    @property
    def size(self) -> int:
        return int(np.size(self.x))

    def _own_term_inexact(self, xy: np.ndarray, wy: np.ndarray) -> bool:
        """Whether the target's own term, w[y] * ((margin - x[y]) + x[y])^p rounded step by step in
        the dtype, differs from w[y] * margin^p rounded: a formulation that sums all C terms and then
        subtracts the target's (w[y] * margin^p / C) leaves the difference behind. Rounding of
        margin - x[y] loses part of the margin, or all of it when x[y] is much larger."""
        rnd = functools.partial(round_array, dtype=self.dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            h = rnd(rnd(rnd(np.array([self.margin])) - xy) + xy)
            own = rnd(wy * rnd(h ** self.p))
            subtracted = rnd(wy * rnd(np.array([self.margin ** self.p])))
            return bool((np.isfinite(xy) & np.isfinite(wy) & np.isfinite(subtracted) & (own != subtracted)).any())

    def features(self) -> set[str]:
        """What kind of input this is, in the vocabulary of FEATURES: deviation lists use it to say
        under which inputs a deviation shows (conformance.deviations)."""
        f = {self.dtype, f"p{self.p}", self.reduction}
        x = np.asarray(self.x, dtype=np.float64)
        w = self.weight
        add = f.add
        for name, v in (("x", x), ("weight", w), ("margin", np.array([self.margin]))):
            if v is not None and np.isnan(v).any():
                add(f"{name}_nan")
            if v is not None and np.isinf(v).any():
                add(f"{name}_inf")
        if w is not None:
            add("weight")
            if (w < 0).any():
                add("negative_weight")
            if (w == 0).any():
                add("zero_weight")
        with np.errstate(invalid="ignore"):
            if ((x != 0) & (np.abs(x) < 2.0 ** fmt(self.dtype).emin)).any():
                add("x_subnormal")
        if self.margin == np.inf:
            add("margin_posinf")
        if self.margin <= 0:
            add("margin_nonpositive")
        if self.margin < 0:
            add("margin_negative")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            # a constant made in float32 for any input: the margin, or margin^p / C (C of a 2-D input)
            # (compared as Python floats: NumPy would compare a float32 with a float in float32)
            if float(np.float32(self.margin)) != self.margin and not np.isnan(self.margin):
                add("margin_f32_inexact")
            C = x.shape[-1] if x.ndim in (1, 2) and x.shape[-1] else None
            if C is not None and np.isfinite(self.margin):
                term = float(self.margin) ** self.p / C
                if float(np.float32(np.float32(float(self.margin) ** self.p) / np.float32(C))) != term:
                    add("margin_term_f32_inexact")
        if not (np.isfinite(self.margin) and float(self.margin).is_integer()):
            add("margin_nonint")
        shape = x.shape
        if len(shape) == 0:
            add("x_0d")
        if len(shape) == 1:
            add("unbatched")
        if np.ndim(self.target) == 0:
            add("target_0d")
        if np.ndim(self.target) == 2 and np.shape(self.target)[1] == 1:
            add("target_column")  # an (N, 1) target
        t_all = np.asarray(self.target)
        if shape and t_all.size and t_all.dtype.kind in "iu" and ((t_all < 0) & (t_all >= -shape[-1])).any():
            add("target_negative")  # a target in [-C, 0): where negative indexing reads a class
        if len(shape) == 2 and shape[0] == 0:
            add("empty")
        if shape and shape[-1] == 1:
            add("one_class")
        if not self.error and x.size and len(shape) in (1, 2):
            C = shape[-1]
            x2, t = x.reshape(-1, C), np.asarray(self.target).reshape(-1)
            with np.errstate(invalid="ignore"):
                z = self.margin - x2[np.arange(len(t)), t][:, None] + x2
            z[np.arange(len(t)), t] = 0.0  # the target's own term does not exist
            if np.isnan(z).any():
                add("z_nan")
            if (z == np.inf).any():
                add("z_posinf")
            wy = np.ones(len(t)) if w is None else np.asarray(w, dtype=np.float64)[t]
            xy = x2[np.arange(len(t)), t]
            for name, v in (("xy", xy), ("wy", wy)):  # a sample's target score, its class's weight
                if np.isnan(v).any():
                    add(f"{name}_nan")
                if np.isinf(v).any():
                    add(f"{name}_inf")
            inactive = ((z <= 0) | np.isnan(z)) & (np.arange(C)[None, :] != t[:, None])
            if (~np.isfinite(wy) & inactive.any(axis=1)).any():
                add("w_nonfinite_inactive")  # a NaN or infinite w[y] on a row with an inactive term
            if self._own_term_inexact(xy, wy):
                add("own_term_inexact")
        if f & {"x_nan", "weight_nan", "margin_nan"}:
            add("nan")
        if f & {"x_inf", "weight_inf", "margin_inf"}:
            add("inf")
        if self.expect is not None and self.expect.kinks:
            add("kink" if any(k[2] for k in self.expect.kinks) else "near_kink")
        rows = x.size // shape[-1] if x.size and shape else 0
        if self.expect is not None and rows and len(set(self.expect.nan_ok_rows)) == rows:
            add("underflowing_scale")  # every row's gradient scale may round to 0 (MML-12.4)
        if self.target_dtype != "int64":
            add(f"{self.target_dtype}_target")
        if self.legacy is not None:
            add("legacy")
        for name in self.noncontiguous:
            add(f"noncontiguous_{name}")
        if self.error:
            add(f"invalid:{self.error}")
        return f

    def problem(self) -> Problem:
        return Problem(self.x, self.target, self.p, self.margin, self.weight, self.reduction,
                       self.dtype, self.cotangent)

    def spec_error(self) -> str | None:
        """What MML-10 says of this call: the kind of error it must raise, or None."""
        return spec.invalid(np.shape(self.x), self.target, self.target_dtype, self.p, self.reduction,
                            None if self.weight is None else np.shape(self.weight))

    def with_expectation(self, where: str = "case") -> Case:
        """Fill `error` from the spec, or `expect` from the exact reference for a valid call."""
        kind = self.spec_error()
        if self.error is not None and self.error != kind:
            raise CaseError(f"{where} (id {self.id!r}): field 'error': the case says {self.error!r} "
                            f"but the spec (MML-10) says {kind or 'the call is valid'}")
        self.error = kind
        self.expect = None if kind else expect(self.problem(), seed_reading="MML-11.1" in self.clauses)
        return self

    # --- JSON -------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        d: dict = {"id": self.id, "clauses": list(self.clauses)}
        if self.doc:
            d["doc"] = self.doc
        d["dtype"] = self.dtype
        d["x"] = encode_array(self.x)
        if self.x.size == 0:
            d["x_shape"] = list(self.x.shape)  # an empty nested list cannot say how many classes
        d["target"] = np.asarray(self.target).tolist()
        if self.target_dtype != "int64":
            d["target_dtype"] = self.target_dtype
        d["p"] = self.p
        d["margin"] = encode(self.margin)
        d["weight"] = None if self.weight is None else encode_array(self.weight)
        d["reduction"] = self.reduction
        if self.legacy is not None:
            d["legacy"] = self.legacy
        if self.cotangent is not None:
            d["cotangent"] = encode_array(self.cotangent)
        if self.noncontiguous:
            d["noncontiguous"] = list(self.noncontiguous)
        if self.error is not None:
            d["error"] = self.error
        if self.expect is not None:
            d["expect"] = _expectation_to_json(self.expect)
        return d

    @classmethod
    def from_json(cls, d, where: str = "case") -> Case:
        """Parse one case; every problem raises CaseError naming the case id and the field."""
        if not isinstance(d, dict):
            raise CaseError(f"{where}: a case must be a JSON object, got {type(d).__name__}")
        cid = d.get("id")
        if not isinstance(cid, str) or not cid.strip():
            raise CaseError(f"{where}: field 'id': must be a non-empty string, got {cid!r}")
        where = f"{where} (id {cid!r})"

        def field_(name, parse, default=...):
            if name not in d:
                if default is ...:
                    raise CaseError(f"{where}: field {name!r} is missing")
                return default
            try:
                return parse(d[name])
            except (ValueError, TypeError) as e:
                raise CaseError(f"{where}: field {name!r}: {e}") from None
            except OverflowError:  # a JSON integer beyond float64 (x) or int64 (target)
                raise CaseError(f"{where}: field {name!r}: a number out of range") from None

        unknown = set(d) - _FIELDS
        if unknown:
            raise CaseError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        dtype = field_("dtype", _parse_dtype)
        x = field_("x", _parse_floats)
        x_shape = field_("x_shape", _parse_shape, None)
        if x_shape is not None:
            if math.prod(max(n, 1) for n in x_shape) > MAX_ELEMENTS:  # an empty batch of 10**12 classes too
                raise CaseError(f"{where}: field 'x_shape': {x_shape} is beyond the {MAX_ELEMENTS} elements a "
                                "case may have")
            if int(np.prod(x_shape)) != x.size:
                raise CaseError(f"{where}: field 'x_shape': {x_shape} does not hold {x.size} values")
            x = x.reshape(x_shape)
        target_dtype = field_("target_dtype", _parse_target_dtype, "int64")
        target = field_("target", lambda v: _parse_target(v, target_dtype))
        case = cls(
            id=cid,
            dtype=dtype,
            x=_to_dtype(x, dtype),
            target=target,
            p=field_("p", _parse_p, 1),
            margin=field_("margin", _parse_margin, 1.0),
            weight=field_("weight", lambda v: None if v is None else _to_dtype(_parse_floats(v), dtype), None),
            reduction=field_("reduction", _parse_str, "mean"),
            target_dtype=target_dtype,
            legacy=field_("legacy", _parse_legacy, None),
            cotangent=field_("cotangent", lambda v: None if v is None else _parse_floats(v), None),
            noncontiguous=field_("noncontiguous", _parse_noncontiguous, ()),
            clauses=tuple(field_("clauses", _parse_str_list, ())),
            doc=field_("doc", _parse_str, ""),
            error=field_("error", _parse_error_kind, None),
        )
        if case.legacy is not None:
            case.reduction = spec.legacy_reduction(**case.legacy)
        try:
            spec.check_clauses(case.clauses, where)
        except ValueError as e:
            raise CaseError(str(e)) from None
        if case.cotangent is not None and np.shape(case.cotangent) != np.shape(case.target):
            raise CaseError(f"{where}: field 'cotangent': shape {np.shape(case.cotangent)} "
                            f"does not match the target's {np.shape(case.target)}")
        for name in case.noncontiguous:
            a = getattr(case, name)
            if a is None or np.ndim(a) == 0 or np.shape(a)[-1] < 2:
                raise CaseError(f"{where}: field 'noncontiguous': {name} "
                                f"{'is absent' if a is None else f'of shape {np.shape(a)}'}; a view of every "
                                "other element needs at least 2 along the last axis")
        if "expect" in d:
            try:
                case.expect = _expectation_from_json(d["expect"], np.shape(case.x), case.problem().out_shape)
            except (ValueError, TypeError, KeyError, OverflowError) as e:
                raise CaseError(f"{where}: field 'expect': {e}") from None
        return case


MAX_ELEMENTS = 1 << 24  # elements of x a case may have (its dimensions counted as at least 1 each)
_FIELDS = {"id", "clauses", "doc", "dtype", "x", "x_shape", "target", "target_dtype", "p", "margin", "weight",
           "reduction", "legacy", "cotangent", "noncontiguous", "error", "expect"}


def _parse_dtype(v) -> str:
    if v not in DTYPES:
        raise ValueError(f"must be one of {', '.join(DTYPES)}, got {v!r}")
    return v


def _parse_target_dtype(v) -> str:
    if v not in TARGET_DTYPES:
        raise ValueError(f"must be one of {', '.join(TARGET_DTYPES)}, got {v!r}")
    return v


def _parse_floats(v) -> np.ndarray:
    if not isinstance(v, (list, int, float, str)) or isinstance(v, bool):
        raise ValueError(f"must be a number or a nested list of numbers, got {type(v).__name__}")
    return decode_array(v)


def _parse_target(v, target_dtype: str) -> np.ndarray:
    if target_dtype.startswith("float"):
        return _parse_floats(v)

    check_nesting(v)

    def check(item):
        if isinstance(item, list):
            return [check(i) for i in item]
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValueError(f"class indices must be integers, got {item!r}")
        return item

    out = np.array(check(v), dtype=np.int64)
    if out.dtype == object:
        raise ValueError("ragged nested list")
    return out


def _parse_p(v) -> int | float:
    """An integer, or a number: 2.0 is 2, as PyTorch reads it; 1.5 stays 1.5 (an invalid call, MML-10.1)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"must be a number, got {v!r}")
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _parse_shape(v) -> list:
    if not isinstance(v, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in v):
        raise ValueError(f"must be a list of non-negative integers, got {v!r}")
    return v


def _parse_margin(v) -> float:
    return decode(v)


def _parse_str(v) -> str:
    if not isinstance(v, str):
        raise ValueError(f"must be a string, got {v!r}")
    return v


def _parse_str_list(v) -> list:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ValueError(f"must be a list of strings, got {v!r}")
    return v


def _parse_noncontiguous(v) -> tuple:
    if not isinstance(v, list) or any(n not in ("x", "weight") for n in v) or len(set(v)) != len(v):
        raise ValueError(f"must be a list of distinct names among 'x' and 'weight', got {v!r}")
    return tuple(v)


def _parse_legacy(v) -> dict | None:
    if v is None:
        return None
    if not isinstance(v, dict) or set(v) - {"size_average", "reduce"}:
        raise ValueError("must be an object with keys 'size_average' and/or 'reduce'")
    for k, val in v.items():
        if val is not None and not isinstance(val, bool):
            raise ValueError(f"{k!r} must be true, false or null, got {val!r}")
    return {"size_average": v.get("size_average"), "reduce": v.get("reduce")}


def _parse_error_kind(v) -> str | None:
    if v is not None and v not in spec.ERROR_CLAUSES:
        raise ValueError(f"must be one of {', '.join(spec.ERROR_CLAUSES)}, got {v!r}")
    return v


def _to_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """Values given in a case file are rounded to the case's dtype, as a framework would."""
    return values if representable(values, dtype).all() else round_array(values, dtype)


# --- expectations ---------------------------------------------------------------------------------

_ARRAYS = ("value", "value_rounded", "value_bound", "grad", "grad_rounded", "grad_bound")


def _expectation_to_json(e: Expectation) -> dict:
    d = {}
    for name in _ARRAYS:
        arr = getattr(e, name)
        if name.endswith("_rounded") and _same(arr, getattr(e, name.replace("_rounded", ""))):
            continue  # the float64 value is already representable in the dtype
        d[name] = encode_array(arr)
    d["kinks"] = [[n, i, exact, encode(lo), encode(hi)] for n, i, exact, lo, hi in e.kinks]
    if e.seed_value is not None:
        d["seed_value"] = encode_array(e.seed_value)
    if e.nan_ok_rows:
        d["nan_ok_rows"] = e.nan_ok_rows
    return d


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def _expectation_from_json(d: dict, x_shape: tuple, out_shape: tuple) -> Expectation:
    arrays = {name: decode_array(d[name]) for name in _ARRAYS if name in d}
    for name in ("value_rounded", "grad_rounded"):
        arrays.setdefault(name, arrays[name.replace("_rounded", "")])
    for name, arr in arrays.items():  # empty nested lists lose their shape
        arrays[name] = arr.reshape(x_shape if name.startswith("grad") else out_shape)
    kinks = [(int(n), int(i), bool(exact), decode(lo), decode(hi)) for n, i, exact, lo, hi in d.get("kinks", [])]
    seed = decode_array(d["seed_value"]) if "seed_value" in d else None
    nan_ok = [int(n) for n in d.get("nan_ok_rows", [])]
    return Expectation(**arrays, kinks=kinks, seed_value=seed, nan_ok_rows=nan_ok)


# --- files ----------------------------------------------------------------------------------------


def load_file(path: str | os.PathLike, need_expect: bool = False) -> list[Case]:
    """Read a case file. Cases without expectations get them from the spec and the reference."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CaseError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CaseError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise CaseError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise CaseError(f'{path}: expected an object {{"cases": [...]}} at the top level')
    cases, seen = [], set()
    for k, item in enumerate(data["cases"]):
        case = Case.from_json(item, where=f"{path}: case #{k}")
        if (case.id, case.dtype) in seen:
            raise CaseError(f"{path}: case #{k} (id {case.id!r}): field 'id': "
                            f"duplicate id for dtype {case.dtype}")
        seen.add((case.id, case.dtype))
        if case.expect is None and case.error is None and need_expect:
            raise CaseError(f"{path}: case #{k} (id {case.id!r}): field 'expect' is missing")
        if case.expect is None:
            case.with_expectation(where=f"{path}: case #{k}")
        cases.append(case)
    return cases


def dumps(cases: list[Case], header: dict | None = None) -> str:
    """Deterministic, reviewable JSON: one key per line, each innermost array on one line."""
    return _dump({**(header or {}), "cases": [c.to_json() for c in cases]}, 0) + "\n"


def _dump(obj, level: int) -> str:
    pad, inner = " " * level, " " * (level + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {_dump(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and any(isinstance(v, (list, dict)) for v in obj):
        if all(isinstance(v, list) and not any(isinstance(u, (list, dict)) for u in v) for v in obj):
            return "[\n" + ",\n".join(inner + json.dumps(v) for v in obj) + "\n" + pad + "]"
        return "[\n" + ",\n".join(inner + _dump(v, level + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the golden store -----------------------------------------------------------------------------

MANIFEST = "MANIFEST.json"


def golden_dir() -> Path:
    """The golden store: cases/golden/, or the directory named by MMCONF_GOLDEN."""
    if os.environ.get("MMCONF_GOLDEN"):
        return Path(os.environ["MMCONF_GOLDEN"])
    from cases import GOLDEN_DIR

    return GOLDEN_DIR


def verify_manifest(directory: Path) -> dict:
    """Check every golden file against the manifest's sha256; raise CaseError naming a bad file."""
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CaseError(f"{manifest_path}: unreadable manifest: {e}") from None
    present = {p.name for p in directory.glob("*.json")} - {MANIFEST}
    for name in sorted(present - set(files)):
        raise CaseError(f"{directory / name}: golden file not listed in {MANIFEST}")
    for name, digest in files.items():
        path = directory / name
        if not path.exists():
            raise CaseError(f"{path}: listed in {MANIFEST} but missing")
        if sha256(path) != digest:
            raise CaseError(f"{path}: sha256 does not match {MANIFEST} (tampered or truncated file)")
    return manifest


def load_golden(directory: Path | None = None) -> list[Case]:
    """All golden cases, after verifying the store against its manifest."""
    directory = directory or golden_dir()
    manifest = verify_manifest(directory)
    return _unique([(directory / name, load_file(directory / name, need_expect=True)) for name in manifest["files"]])


def load_cases(paths, golden: bool) -> list[Case]:
    """The golden cases (when asked) and every case file's; an id (per dtype) given twice, in two
    files or by a file and the golden store, is refused: records, reports and deviation entries
    name a case by it."""
    files = [("the golden cases", load_golden())] if golden else []
    return _unique(files + [(path, load_file(path)) for path in paths])


def _unique(files) -> list[Case]:
    where: dict = {}
    for source, cases in files:
        for case in cases:
            if case.key in where:
                raise CaseError(f"{source}: case id {case.id!r} (dtype {case.dtype}) is already given by "
                                f"{where[case.key]}: give it another id")
            where[case.key] = source
    return [case for _, cases in files for case in cases]
