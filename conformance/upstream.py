"""Issue drafts for a framework's maintainers: one Markdown file per backend and mechanism (a
listed deviation entry), from a run's results (`mmconf findings --upstream`).

Each draft says what breaks in the maintainers' terms: a title, the clause and its text, the
versions, modes, devices and dtypes the run saw it in, the smallest reproducing call in the
framework's own API, expected against got, and what the fix should make true. Only vendors'
backends get drafts (our own implementations are fixed here), and only listed deviations: a new
failure needs a look before it is anyone's bug.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from . import spec
from .files import write_atomic
from .record import FAILING, known

MARK = "<!-- mmconf upstream draft -->"  # the first line of every draft: only such files are replaced


def groups(doc: dict) -> dict[tuple[str, str], list[dict]]:
    """(backend, entry label) -> the known-deviation records of vendors' backends it explains."""
    out: dict = defaultdict(list)
    for r in doc["records"]:
        desc = doc["backends"].get(r["backend"], {})
        if known(r) and not desc.get("ours", False):
            out[(r["backend"], r["deviation"].get("label", "?"))].append(r)
    return dict(sorted(out.items()))


def _smallest(records: list[dict]) -> dict:
    """The record whose case is smallest (shortest expected values), with a repro where one has it."""
    usual = ("float32", "float64", "float16", "bfloat16")  # the repro a maintainer runs first
    return min(records, key=lambda r: (not r.get("repro"), len(json.dumps(r.get("expected", ""))),
                                       usual.index(r["dtype"]) if r["dtype"] in usual else 4, r["id"]))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48]


def releases(backend: str, clause: str, matrix_dir: Path | None) -> str | None:
    """Which releases of the published matrix (mmconf matrix) fail records under the clause, and
    which conform; None without a matrix for the backend."""
    try:
        versions = json.loads((matrix_dir / f"{backend}.json").read_text(encoding="utf-8"))["versions"]
    except (TypeError, OSError, ValueError, KeyError):
        return None
    failing = [v["version"] for v in versions
               if any(v["clauses"].get(clause, {}).get(verdict) for verdict in FAILING)]
    clean = [v["version"] for v in versions if v["version"] not in failing and clause in v["clauses"]]
    return (f"Releases with failing records under {clause} (`mmconf matrix {backend}`): "
            f"{', '.join(failing) or 'none'}; conforming: {', '.join(clean) or 'none'}.")


def draft(backend: str, records: list[dict], doc: dict, matrix_dir: Path | None = None) -> tuple[str, str]:
    """(title, Markdown body) of one mechanism's issue."""
    d = records[0]["deviation"]
    clause = d["clause"]
    title_of = spec.clauses().get(clause, "")
    version = doc["backends"].get(backend, {}).get("version", "?")
    modes = sorted({f"{r['mode']} on {r['device']}" for r in records})
    dtypes = sorted({r["dtype"] for r in records})
    checks = sorted({r["check"] for r in records})
    cases = sorted({r["case"] for r in records})
    r = _smallest(records)
    what = {"value": "wrong values", "grad": "wrong gradients", "error": "no error for an invalid call"}
    title = f"multi_margin_loss: {', '.join(what.get(c, c) for c in checks)} ({clause} {title_of})"
    lines = [MARK, f"# {title}", "",
             f"**{backend} {version}**; seen in {', '.join(modes)}; dtypes {', '.join(dtypes)}; "
             f"{len(records)} failing check(s) over {len(cases)} case(s).", "",
             *([seen, ""] if (seen := releases(backend, clause, matrix_dir)) else []),
             "## What happens", "", f"Mechanism: {d['reason']}.", "",
             "## Expected behaviour", "",
             f"{clause} ({title_of}): {spec.clause_text(clause)}", "",
             "(From the mmconf spec, `conformance/SPEC.md`, which follows `torch.nn.MultiMarginLoss`'s "
             "documented contract.)", "",
             "## Smallest reproduction", "", f"Case `{r['case']}` ({r['dtype']}, {r['mode']} on {r['device']}, "
             f"{r['check']} check):", ""]
    if r.get("repro"):
        lines += ["```python", r["repro"], "```", ""]
    if r["check"] == "error":
        lines += [f"Expected: an error ({clause}). Got: {r.get('detail', '')}", ""]
    elif r.get("expected") is None:  # no values to compare: a wrong shape, say
        lines += [f"Got: {r.get('detail', '')}", ""]
    else:
        lines += [f"Expected (exact reference, rounded to {r['dtype']}): `{_short(r.get('expected'))}`", "",
                  f"Got: `{_short(r.get('got'))}`" + (f" (worst element at {r['at']})" if "at" in r else ""), "",
                  f"Allowed error: {float(r.get('bound') or 0):.3g} ({r.get('detail', '')})", ""]
    lines += ["## What the fix should make true", "",
              f"Every call meets {clause} as quoted above, in each mode, device and dtype listed; then "
              f"`mmconf run --backends {backend}` reports this deviation's entry as stale.", "",
              "## Other cases", "", ", ".join(f"`{c}`" for c in cases[:12])
              + (f", and {len(cases) - 12} more" if len(cases) > 12 else ""), "",
              f"Found by mmconf: `mmconf run --backends {backend} -k {r['case']}` reruns the smallest case."]
    return title, "\n".join(lines) + "\n"


def _short(v) -> str:
    text = json.dumps(v)
    return text if len(text) <= 300 else text[:297] + "..."


def write(doc: dict, out_dir: Path, matrix_dir: Path | None = None) -> list[tuple[Path, str]]:
    """Write every draft and an index into `out_dir`, replacing the drafts an earlier call wrote
    there (and nothing else); returns (path, title) of each. Drafts of a backend with a release
    matrix in `matrix_dir` say which releases fail under the clause."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.md"):
        try:
            if old.read_text(encoding="utf-8").startswith(MARK):
                old.unlink()
        except (OSError, UnicodeDecodeError):
            pass
    written = []
    numbers: dict[str, int] = defaultdict(int)
    for (backend, _), records in groups(doc).items():
        numbers[backend] += 1
        k = numbers[backend]
        title, body = draft(backend, records, doc, matrix_dir)
        path = out_dir / f"{backend}-{k:02d}-{_slug(records[0]['deviation']['clause'] + ' ' + title_words(title))}.md"
        write_atomic(path, body)
        written.append((path, title))
    index = [MARK, "# Issue drafts for upstream", "",
             "One draft per framework and mechanism (a listed deviation entry), from "
             f"the run of {doc.get('generated', 'this report')}.", ""]
    index += [f"- [{p.name}]({p.name}): {title}" for p, title in written] or ["No vendor deviations."]
    write_atomic(out_dir / "README.md", "\n".join(index) + "\n")
    return written


def title_words(title: str) -> str:
    return title.split(": ", 1)[-1].split(" (")[0]
