"""mmconf matrix: the golden cases through several released versions of one backend's framework,
each in a virtual environment of its own that mmconf creates once and keeps in its cache
directory (envs/<package>-<version>); the workers run this checkout's harness and adapters there.

The result is a table of versions against clauses (conforms, deviates with its record count, or
only unsupported) and a trend of failing records per version: deviations come and go between
releases. Deviation lists describe the installed release, so an older release's failures may be
unlisted: the matrix counts failing records, listed or not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

from . import cache, report, spec
from .files import write_atomic
from .record import FAILING, PASS, UNSUPPORTED, Tally

# backend -> (its PyPI requirement, given a version; the versions of the published matrix)
PACKAGES = {
    "paddle": (lambda v: [f"paddlepaddle=={v}"], ["2.6.2", "3.0.0", "3.1.1", "3.2.2", "3.3.1"]),
    "mindspore": (lambda v: [f"mindspore=={v}"], ["2.7.2", "2.8.0", "2.9.0", "2.10.0"]),
    "jax": (lambda v: [f"jax[cpu]=={v}"], ["0.4.38", "0.10.2"]),
    "tensorflow": (lambda v: [f"tensorflow-cpu=={v}"], ["2.16.2", "2.21.0"]),
}
ROOT = Path(__file__).resolve().parent.parent  # the checkout whose harness the workers import


class MatrixError(RuntimeError):
    """A version could not be installed."""


def environment(backend: str, version: str, log=print) -> Path:
    """The interpreter of an environment holding `version` of the backend's framework (and NumPy
    and ml_dtypes, which the worker needs), created on first use."""
    requirement, _ = PACKAGES[backend]
    where = cache.root()
    if where is None:
        raise MatrixError("mmconf matrix keeps its environments in the cache directory; MMCONF_CACHE_DIR is off")
    env_dir = where / cache.ENVS / f"{backend}-{version}"
    python = env_dir / "bin" / "python"
    if (env_dir / ".ready").is_file():
        return python
    log(f"creating {env_dir} ({' '.join(requirement(version))})")
    venv.EnvBuilder(clear=True, with_pip=True).create(env_dir)
    pip = [str(python), "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check",
           *requirement(version), "numpy", "ml_dtypes"]
    r = subprocess.run(pip, capture_output=True, text=True)
    if r.returncode:
        raise MatrixError(f"pip could not install {backend} {version}: {r.stderr.strip()[-600:]}")
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    (env_dir / ".ready").write_text(freeze)
    return python


def run_version(backend: str, version: str, cases, jobs=None, log=print) -> dict:
    """One version's results document (runner.run in that version's environment)."""
    from .runner import run

    python = environment(backend, version, log)
    # this checkout's harness, and nothing else of this environment's (a PYTHONPATH of the user's
    # could bring the installed framework back in)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONHOME", None)
    return run([backend], cases, jobs=jobs, python=str(python), env=env, whole_store=False)


def summarise(version: str, doc: dict) -> dict:
    """What the matrix keeps of one version's run: its tally, and per clause the verdicts."""
    records = doc["records"]
    by_clause: dict = defaultdict(Counter)
    for r in records:
        for c in report._blamed_clauses(r) if r["verdict"] in FAILING else r["clauses"]:
            by_clause[c][r["verdict"]] += 1
    desc = doc["backends"].get(next(iter(doc["backends"])), {})
    modes: dict = defaultdict(list)
    for r in records:
        modes[r["mode"]].append(r)
    return {"version": version, "installed": desc.get("version", desc.get("missing", "?")), **_tally(records),
            "modes": {m: _tally(rs) for m, rs in sorted(modes.items())},
            "clauses": {c: dict(v) for c, v in sorted(by_clause.items())}}


def _tally(records) -> dict:
    t = Tally.of(records)
    # a valid call that raised: with an old release, often the adapter's use of an API it lacks
    raised = sum(r["verdict"] in FAILING and str(r.get("detail", "")).startswith("raised") and r["check"] != "error"
                 for r in records)
    return {"records": len(records), "pass": t.passed, "failing": t.failing, "known": t.known, "new": t.new,
            "raised": raised, "unsupported": t.unsupported, "crash": t.crash, "timeout": t.timeout}


def _cell(verdicts: dict | None) -> str:
    if not verdicts:
        return ""
    failing = sum(verdicts.get(v, 0) for v in FAILING)
    if failing:
        return f"✗ {failing}"
    return "✓" if verdicts.get(PASS) else ("–" if verdicts.get(UNSUPPORTED) else "")


def blocks(doc: dict) -> list:
    versions = doc["versions"]
    out: list = [("h1", f"mmconf matrix: {doc['backend']}")]
    out.append(("p", f"Every golden case through {doc['backend']} releases, each in its own environment "
                f"(`mmconf matrix {doc['backend']}`), {doc['generated']}, on {doc['machine']}. Deviation "
                "lists describe the newest release: the counts here are failing records, listed or not."))
    out.append(("p", "Per release and mode. `raised`: failing valid calls that raised instead of answering: "
                "a listed deviation (a release that refuses an input), or with an old release often an API the "
                "adapter uses that the release lacks (paddle 2.6.2's dy2static cannot transform the static "
                "mode's function)."))
    out.append(("table", ["version", "mode", "records", "pass", "failing", "of them listed", "raised", "unsupported",
                          "failing by crash", "failing by timeout"],
                [[v["installed"], m, t["records"], t["pass"], t["failing"], t["known"], t["raised"], t["unsupported"],
                  t["crash"], t["timeout"]] for v in versions for m, t in v["modes"].items()]))
    if doc.get("plot"):
        out.append(("img", doc["plot"], "failing records per version"))
    out.append(("h2", "Clauses by version"))
    out.append(("p", "✓ conforms on every case citing the clause; ✗ n: n failing records; – only unsupported."))
    clauses = [c for c in spec.clauses() if any(c in v["clauses"] for v in versions)]
    out.append(("table", ["clause", *[v["version"] for v in versions]],
                [[f"{c} {spec.clauses()[c]}", *[_cell(v["clauses"].get(c)) for v in versions]] for c in clauses]))
    return out


def write(doc: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    name = doc["backend"]
    try:
        doc["plot"] = _plot(doc, out_dir / f"{name}.svg")
    except ImportError:
        doc["plot"] = None  # matplotlib is the bench extra's
    write_atomic(out_dir / f"{name}.json", json.dumps(doc, indent=1) + "\n")
    bs = blocks(doc)
    write_atomic(out_dir / f"{name}.md", report.to_markdown(bs))
    write_atomic(out_dir / f"{name}.html", report.to_html(bs, title=f"mmconf matrix: {name}"))
    return [out_dir / f"{name}.{ext}" for ext in ("md", "json", "html")]


def _plot(doc: dict, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versions = doc["versions"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    labels = [v["version"] for v in versions]
    ax.plot(labels, [v["failing"] for v in versions], marker="o", label="failing records")
    ax.plot(labels, [v["unsupported"] for v in versions], marker="s", label="unsupported")
    ax.set_xlabel(f"{doc['backend']} release")
    ax.set_ylabel("records")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def matrix(backend: str, versions: list[str], cases, jobs=None, log=print) -> dict:
    rows = []
    for version in versions:
        log(f"{backend} {version}: running {len(cases)} cases")
        doc = run_version(backend, version, cases, jobs=jobs, log=log)
        rows.append(summarise(version, doc))
        log(f"{backend} {version}: {rows[-1]['pass']} pass, {rows[-1]['failing']} failing, "
            f"{rows[-1]['unsupported']} unsupported")
    env = report_environment()
    return {"kind": "mmconf-matrix", "backend": backend, "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": env, "python": sys.version.split()[0], "versions": rows}


def report_environment() -> str:
    from .runner import environment

    e = environment()
    return f"{e['cpu']}, {e['cpu_count']} CPUs, Python {e['python']}"
