"""Expected deviations: per backend, the mechanisms by which it is known to break a clause, and
the inputs under which each shows.

One TOML file per backend in conformance/deviations/, like array-api-tests' xfail lists:

    [[deviation]]
    where = "torch-cpu-eager-*"       # fnmatch pattern over backend-device-mode-dtype
    when = ["z_nan"]                  # the input features under which it shows (caseio.FEATURES); "!x" negates
    check = "value"                   # value | grad | fd | error, or a list of them; omitted: any
    clause = "MML-7.1"
    reason = "the ATen kernel adds a term only if z > 0, so NaN terms are dropped"
    examples = ["special/nan-score"]  # optional: golden cases that show it (a test checks they match)
    strict = false                    # optional: the features do not always make it show

A record matches an entry when its backend, device, mode and dtype match `where`, its check is
one of `check`, and its case has every feature in `when`: by mechanism, so the entry applies to a
user's or a fuzzer's cases as it does to the golden ones. A failing record that an entry matches
is a known deviation (a strict xfail under pytest); a passing one is an unexpected pass, so a fix
upstream shows up. Where the features are necessary but not sufficient (the deviation also needs,
say, a sum that does not overflow anyway), the entry is `strict = false`: a pass is then no news,
and a fix upstream shows as the entry turning stale. An entry is stale when a run covered its
`where` and it explained no failing record.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import spec
from .caseio import FEATURES
from .record import CHECKS, FAILING

DEVIATIONS_DIR = Path(__file__).with_name("deviations")


@dataclass(frozen=True)
class Deviation:
    backend: str
    where: str
    check: tuple  # the checks it applies to; empty: all
    clause: str
    reason: str
    when: tuple = ()
    strict: bool = True
    examples: tuple = ()

    @property
    def label(self) -> str:
        """How reports name the entry: where, under which features, for which checks."""
        when = f" when {' & '.join(self.when)}" if self.when else ""
        return f"{self.where}{when} [{', '.join(self.check) or 'any check'}]"

    def covers(self, record: dict) -> bool:
        """The record's backend, device, mode and dtype are where the entry applies."""
        prefix = f"{record['backend']}-{record['device']}-{record['mode']}-{record['dtype']}"
        return record["backend"] == self.backend and fnmatch.fnmatchcase(prefix, self.where)

    def matches(self, record: dict, features: set) -> bool:
        return ((not self.check or record["check"] in self.check) and self.covers(record)
                and all((f[1:] not in features) if f.startswith("!") else (f in features) for f in self.when))

    def annotation(self) -> dict:
        """What a matched record carries (results.json): enough to explain it without this file."""
        return {"clause": self.clause, "reason": self.reason, "label": self.label, "where": self.where,
                "when": list(self.when), "check": list(self.check), "strict": self.strict}


class DeviationError(ValueError):
    """A deviation file that cannot be used: the message names the file, and the entry or line."""


KEYS = {"where", "check", "clause", "reason", "when", "strict", "examples"}


def _strings(item: dict, key: str, at: str) -> tuple:
    value = item.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DeviationError(f"{at}: {key!r} must be a list of strings")
    return tuple(value)


def _entry(backend: str, item, at: str) -> Deviation:
    """One [[deviation]] table, checked: an unknown key (a typo of `when`, say) would silently widen
    the entry to every record of its `where`, so it is refused."""
    if not isinstance(item, dict):
        raise DeviationError(f"{at}: expected a [[deviation]] table")
    if "id" in item:
        raise DeviationError(f"{at}: 'id' (a pattern over record ids) is gone: entries match by mechanism, "
                             "'where' (backend-device-mode-dtype) and 'when' (features), with golden ids as 'examples'")
    unknown, missing = set(item) - KEYS, {"where", "clause", "reason"} - set(item)
    if unknown:
        raise DeviationError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KEYS))}")
    if missing:
        raise DeviationError(f"{at}: missing {', '.join(sorted(missing))}")
    for key in ("where", "clause", "reason"):
        if not isinstance(item[key], str) or not item[key].strip():
            raise DeviationError(f"{at}: {key!r} must be a non-empty string")
    if "/" in item["where"]:
        raise DeviationError(f"{at}: 'where' is backend-device-mode-dtype; name golden cases in 'examples'")
    check = item.get("check", ())
    check = (check,) if isinstance(check, str) else check
    if not isinstance(check, (list, tuple)) or any(c not in CHECKS for c in check):
        raise DeviationError(f"{at}: 'check' must be one of {', '.join(CHECKS)} or a list of them")
    if not isinstance(item.get("strict", True), bool):
        raise DeviationError(f"{at}: 'strict' must be true or false")
    when = _strings(item, "when", at)
    for f in when:
        name = f.removeprefix("!")
        if name not in FEATURES and not (name.startswith("invalid:") and name[8:] in spec.ERROR_CLAUSES):
            raise DeviationError(f"{at}: unknown feature {f!r} in 'when'")
    try:
        spec.check_clauses([item["clause"]], at)
    except ValueError as e:
        raise DeviationError(str(e)) from None
    return Deviation(backend, item["where"], tuple(check), item["clause"], item["reason"], when,
                     item.get("strict", True), _strings(item, "examples", at))


class Deviations:
    def __init__(self, entries: list[Deviation]):
        self.entries = entries

    @classmethod
    def load(cls, directory: Path | None = None) -> Deviations:
        entries = []
        for path in sorted(Path(directory or DEVIATIONS_DIR).glob("*.toml")):
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
                raise DeviationError(f"{path}: {e}") from None  # TOML's message gives the line and column
            if set(data) - {"deviation"} or not isinstance(data.get("deviation", []), list):
                raise DeviationError(f"{path}: expected [[deviation]] tables only")
            for k, item in enumerate(data.get("deviation", [])):
                entries.append(_entry(path.stem, item, f"{path} entry #{k}"))
        return cls(entries)

    def match(self, record: dict, features: set) -> Deviation | None:
        """The first entry that lists this record, by its backend, device, mode, dtype, check and
        its case's features (Case.features, computed once per case by the caller)."""
        return next((e for e in self.entries if e.matches(record, features)), None)

    def annotate(self, records: list[dict], cases: dict) -> None:
        """Mark each record the lists expect to deviate ('deviation': Deviation.annotation).
        `cases` maps (case id, dtype) to the case."""
        features: dict = {}
        for r in records:
            key = r["case"], r["dtype"]
            if key not in features:
                features[key] = cases[key].features()
            entry = self.match(r, features[key])
            if entry:
                r["deviation"] = entry.annotation()

    def stale(self, records: list[dict], cases: dict) -> list[Deviation]:
        """Entries that explain no failing record although the run covered their `where` (a run of
        some modes or dtypes says nothing of the others): fixed upstream, or wrongly put. Records
        without a verdict (a plan) count as failing. Meaningful for runs of the whole golden store."""
        live, covered = set(), set()
        features = {key: case.features() for key, case in cases.items()}
        for r in records:
            failing = r.get("verdict", "fail") in FAILING
            for i, e in enumerate(self.entries):
                if i not in covered and e.covers(r):
                    covered.add(i)
                if failing and i not in live and e.matches(r, features[r["case"], r["dtype"]]):
                    live.add(i)
        return [e for i, e in enumerate(self.entries) if i in covered and i not in live]
