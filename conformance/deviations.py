"""Expected deviations: per backend, the records where it is known to break a clause, and why.

One TOML file per backend in conformance/deviations/, like array-api-tests' xfail lists:

    [[deviation]]
    id = "torch-cpu-eager-*-special/nan-*"   # fnmatch pattern over record ids
    check = "value"                          # value | grad | error; omitted: any
    clause = "MML-7.1"
    reason = "the ATen kernel tests z > 0, so NaN terms are dropped"

An entry may also say `when = ["nan"]`: the input features (conformance.caseio.Case.features)
under which the deviation shows. Fuzzed cases have no golden ids, so for them an entry applies
where its id pattern's backend-device-mode-dtype part matches and every feature it names is
present.

A failing record that an entry matches is a known deviation (a strict xfail under pytest); a
passing one is an unexpected pass, so a fix upstream shows up; an entry that matches no record of
a run that covered its backend is stale.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import spec

DEVIATIONS_DIR = Path(__file__).with_name("deviations")


@dataclass(frozen=True)
class Deviation:
    backend: str
    id: str
    check: str
    clause: str
    reason: str
    when: tuple = ()

    def matches(self, record: dict) -> bool:
        return (self.check in ("*", record["check"])) and fnmatch.fnmatchcase(record["id"], self.id)

    def explains(self, record: dict, features: set) -> bool:
        """For a fuzzed case: the where-part of the pattern matches and the `when` features hold."""
        if not self.when or self.check not in ("*", record["check"]) or not set(self.when) <= features:
            return False
        where = self.id
        if "/" in where:  # cut off the case part: backend-device-mode-dtype remains
            where = where[: where.rfind("-", 0, where.find("/"))]
        prefix = f"{record['backend']}-{record['device']}-{record['mode']}-{record['dtype']}"
        return fnmatch.fnmatchcase(prefix, where)


class Deviations:
    def __init__(self, entries: list[Deviation]):
        self.entries = entries

    @classmethod
    def load(cls, directory: Path = DEVIATIONS_DIR) -> Deviations:
        entries = []
        for path in sorted(Path(directory).glob("*.toml")):
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            for k, item in enumerate(data.get("deviation", [])):
                where = f"{path.name} entry #{k}"
                missing = {"id", "clause", "reason"} - set(item)
                if missing:
                    raise ValueError(f"{where}: missing {', '.join(sorted(missing))}")
                spec.check_clauses([item["clause"]], where)
                entries.append(Deviation(path.stem, item["id"], item.get("check", "*"), item["clause"],
                                         item["reason"], tuple(item.get("when", ()))))
        return cls(entries)

    def match(self, record: dict) -> Deviation | None:
        for entry in self.entries:
            if entry.backend == record["backend"] and entry.matches(record):
                return entry
        return None

    def explains(self, record: dict, case) -> bool:
        """Whether a listed deviation accounts for this failing record: by id, or for a fuzzed
        case by its features."""
        if self.match(record):
            return True
        features = case.features
        return any(e.backend == record["backend"] and e.explains(record, features) for e in self.entries)

    def annotate(self, records: list[dict]) -> None:
        """Mark each record the lists expect to deviate: 'deviation' holds the entry's clause and reason."""
        for r in records:
            entry = self.match(r)
            if entry:
                r["deviation"] = {"clause": entry.clause, "reason": entry.reason, "pattern": entry.id}

    def stale(self, records: list[dict]) -> list[Deviation]:
        """Entries of the run's backends that match none of its records."""
        backends = {r["backend"] for r in records}
        return [e for e in self.entries if e.backend in backends and not any(e.matches(r) for r in records)]
