"""The spec as code: clause ids read from SPEC.md, and the call contract of MML-1, MML-6 and MML-10.

The clause list is parsed from SPEC.md itself so the text stays the single place a clause is
defined; golden cases, deviation lists and reports are checked against it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np

SPEC_PATH = Path(__file__).with_name("SPEC.md")
REDUCTIONS = ("none", "mean", "sum")

# Invalid-input kinds (MML-10) and the clause each one breaks.
ERROR_CLAUSES = {
    "p": "MML-10.1",
    "target_range": "MML-10.2",
    "input_rank": "MML-10.3",
    "target_shape": "MML-10.4",
    "weight_shape": "MML-10.5",
    "reduction": "MML-10.6",
    "no_classes": "MML-10.7",
    "target_dtype": "MML-10.8",
}
# The kinds a traced or compiled function may answer with NaN instead of raising (MML-10.9).
VALUE_DEPENDENT_ERRORS = ("target_range",)

_CLAUSE = re.compile(r"^\*\*(MML-\d+\.\d+) ([^*]+?)\.\*\*")


@lru_cache(maxsize=1)
def _parsed() -> dict[str, tuple[str, str]]:
    """Clause id -> (its title, its normative text without the *Why:* line), in document order."""
    lines = SPEC_PATH.read_text(encoding="utf-8").splitlines()
    out: dict[str, tuple[str, str]] = {}
    for k, line in enumerate(lines):
        m = _CLAUSE.match(line)
        if m:
            body = [line[m.end():].strip()]
            for more in lines[k + 1:]:
                if not more.strip() or more.startswith(("*Why:*", "**MML-", "#")):
                    break
                body.append(more.strip())
            out[m.group(1)] = (m.group(2), " ".join(b for b in body if b))
    return out


@lru_cache(maxsize=1)
def clauses() -> dict[str, str]:
    """Clause id -> its title, in document order."""
    return {c: title for c, (title, _) in _parsed().items()}


def clause_text(clause: str) -> str:
    """A clause's normative text, without its title and its *Why:* line."""
    return _parsed().get(clause, ("", ""))[1]


def section(clause: str) -> str:
    """'MML-7.2' -> 'MML-7'."""
    return clause.rsplit(".", 1)[0]


def check_clauses(ids, where: str) -> None:
    known = clauses()
    unknown = [c for c in ids if c not in known]
    if unknown:
        raise ValueError(f"{where}: unknown spec clause(s) {', '.join(unknown)}")


def legacy_reduction(size_average, reduce) -> str:
    """MML-6.4: the reduction that the deprecated size_average / reduce arguments select."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def invalid(x_shape, target, target_dtype: str, p, reduction, weight_shape) -> str | None:
    """The MML-10 kind of an invalid call, or None for a valid one.

    `target` is the target array (its values are checked for MML-10.2 only when all else is valid).
    """
    if not (isinstance(p, int) and not isinstance(p, bool) and p in (1, 2)):
        return "p"
    if reduction not in REDUCTIONS:
        return "reduction"
    if len(x_shape) not in (1, 2):
        return "input_rank"
    C = x_shape[-1]
    if C == 0:
        return "no_classes"
    if not target_dtype.startswith(("int", "uint")):
        return "target_dtype"
    t_shape = tuple(np.shape(target))
    if len(x_shape) == 2 and t_shape != (x_shape[0],):
        return "target_shape"
    if len(x_shape) == 1 and t_shape not in ((), (1,)):
        return "target_shape"
    if weight_shape is not None and tuple(weight_shape) != (C,):
        return "weight_shape"
    t = np.asarray(target)
    if t.size and (t.min() < 0 or t.max() >= C):
        return "target_range"
    return None
