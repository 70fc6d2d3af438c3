"""Expected deviations: per backend, the records where it is known to break a clause, and why.

One TOML file per backend in conformance/deviations/, like array-api-tests' xfail lists:

    [[deviation]]
    id = "torch-cpu-eager-*-special/nan-*"   # fnmatch pattern over record ids
    check = "value"                          # value | grad | fd | error, or a list of them; omitted: any
    clause = "MML-7.1"
    reason = "the ATen kernel adds a term only if z > 0, so NaN terms are dropped"
    when = ["z_nan"]                         # optional: input features (caseio.FEATURES), "!x" negates
    strict = false                           # optional: the deviation does not always show

A record matches an entry when its id matches the pattern and the case has every feature in
`when`. A failing record that an entry matches is a known deviation (a strict xfail under pytest);
a passing one is an unexpected pass, so a fix upstream shows up (except for `strict = false`
entries: reading uninitialised memory, say, may return the right value by chance); an entry that matches no record
of a run that covered its backend is stale.

Fuzzed cases have no golden ids, so an entry explains a fuzzed record by its `when` features
alone, within the backend-device-mode-dtype part of its pattern (the pattern up to the case name).
Entries without `when` never explain a fuzzed record.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import spec
from .caseio import FEATURES

DEVIATIONS_DIR = Path(__file__).with_name("deviations")


@dataclass(frozen=True)
class Deviation:
    backend: str
    id: str
    check: tuple  # the checks it applies to; empty: all
    clause: str
    reason: str
    when: tuple = ()
    strict: bool = True

    def _holds(self, features: set) -> bool:
        return all((f[1:] not in features) if f.startswith("!") else (f in features) for f in self.when)

    def _covers(self, check: str) -> bool:
        return not self.check or check in self.check

    def matches(self, record: dict, features: set) -> bool:
        return self._covers(record["check"]) and fnmatch.fnmatchcase(record["id"], self.id) and self._holds(features)

    def explains(self, record: dict, features: set) -> bool:
        """For a fuzzed case: the where-part of the pattern matches and the `when` features hold."""
        if not self.when or not self._covers(record["check"]) or not self._holds(features):
            return False
        prefix = f"{record['backend']}-{record['device']}-{record['mode']}-{record['dtype']}"
        return fnmatch.fnmatchcase(prefix, self.where())

    def where(self) -> str:
        """The backend-device-mode-dtype part of the pattern (the pattern up to the case name)."""
        if "/" not in self.id:
            return self.id
        return self.id[: self.id.rfind("-", 0, self.id.find("/"))]


class DeviationError(ValueError):
    """A deviation file that cannot be used: the message names the file, and the entry or line."""


KEYS = {"id", "check", "clause", "reason", "when", "strict"}
CHECKS = ("value", "grad", "fd", "error")


def _check_features(when, where: str) -> tuple:
    if not isinstance(when, list) or not all(isinstance(f, str) for f in when):
        raise DeviationError(f"{where}: 'when' must be a list of feature names")
    for f in when:
        name = f.removeprefix("!")
        if name not in FEATURES and not (name.startswith("invalid:") and name[8:] in spec.ERROR_CLAUSES):
            raise DeviationError(f"{where}: unknown feature {f!r} in 'when'")
    return tuple(when)


def _entry(backend: str, item, where: str) -> Deviation:
    """One [[deviation]] table, checked: an unknown key (a typo of `when`, say) would silently widen
    the entry to every record its pattern matches, so it is refused."""
    if not isinstance(item, dict):
        raise DeviationError(f"{where}: expected a [[deviation]] table")
    unknown, missing = set(item) - KEYS, {"id", "clause", "reason"} - set(item)
    if unknown:
        raise DeviationError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KEYS))}")
    if missing:
        raise DeviationError(f"{where}: missing {', '.join(sorted(missing))}")
    for key in ("id", "clause", "reason"):
        if not isinstance(item[key], str) or not item[key].strip():
            raise DeviationError(f"{where}: {key!r} must be a non-empty string")
    check = item.get("check", ())
    check = (check,) if isinstance(check, str) else check
    if not isinstance(check, (list, tuple)) or any(c not in CHECKS for c in check):
        raise DeviationError(f"{where}: 'check' must be one of {', '.join(CHECKS)} or a list of them")
    if not isinstance(item.get("strict", True), bool):
        raise DeviationError(f"{where}: 'strict' must be true or false")
    try:
        spec.check_clauses([item["clause"]], where)
    except ValueError as e:
        raise DeviationError(str(e)) from None
    return Deviation(backend, item["id"], tuple(check), item["clause"], item["reason"],
                     _check_features(item.get("when", []), where), item.get("strict", True))


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

    def match(self, record: dict, case) -> Deviation | None:
        features = case.features()
        for entry in self.entries:
            if entry.backend == record["backend"] and entry.matches(record, features):
                return entry
        return None

    def explains(self, record: dict, case) -> bool:
        """Whether a listed deviation accounts for this failing record: by its id, or for a
        fuzzed case by its features."""
        if self.match(record, case):
            return True
        features = case.features()
        return any(e.backend == record["backend"] and e.explains(record, features) for e in self.entries)

    def annotate(self, records: list[dict], cases: dict) -> None:
        """Mark each record the lists expect to deviate: 'deviation' holds the entry's clause and
        reason. `cases` maps (case id, dtype) to the case."""
        for r in records:
            entry = self.match(r, cases[r["case"], r["dtype"]])
            if entry:
                r["deviation"] = {"clause": entry.clause, "reason": entry.reason, "pattern": entry.id,
                                  "when": list(entry.when), "strict": entry.strict}

    def stale(self, records: list[dict], cases: dict) -> list[Deviation]:
        """Entries that match none of the run's records although the run covered where they
        apply: their backend-device-mode-dtype part matches a record (a run of some modes or
        dtypes only says nothing of the others). Meaningful for runs of the whole golden store."""
        live, covered = set(), set()
        features = {key: case.features() for key, case in cases.items()}
        for r in records:
            f = features[r["case"], r["dtype"]]
            prefix = f"{r['backend']}-{r['device']}-{r['mode']}-{r['dtype']}"
            for i, e in enumerate(self.entries):
                if e.backend == r["backend"]:
                    if i not in covered and fnmatch.fnmatchcase(prefix, e.where()):
                        covered.add(i)
                    if i not in live and e.matches(r, f):
                        live.add(i)
        return [e for i, e in enumerate(self.entries) if i in covered and i not in live]
