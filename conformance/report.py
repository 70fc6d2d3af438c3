"""Reports: results.json, conformance.md and a static index.html built from the same blocks.

The report is a list of blocks (headings, paragraphs, tables, code) rendered twice, to Markdown
and to HTML, so the two always show the same tables. `merge` joins the results of several
machines (a CPU box and a GPU box, say) into one document.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

from . import spec
from .caseio import write_atomic
from .floats import encode
from .runner import FAILING


def write_results(doc: dict, path: Path) -> None:
    doc.setdefault("generated", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    write_atomic(path, json.dumps(_json_safe(doc), indent=1, allow_nan=False) + "\n")


def _json_safe(v):
    """Non-finite floats as the strings case files use ("nan", "inf", "-inf")."""
    if isinstance(v, float) and not math.isfinite(v):
        return encode(v)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def row_key(r: dict) -> str:
    return f"{r['backend']}/{r['mode']} ({r['device']})"


def unexpected(r: dict) -> bool:
    return r["verdict"] in FAILING and "deviation" not in r


def conforms(doc: dict) -> bool:
    """True when every failing record is a listed deviation."""
    return not any(unexpected(r) for r in doc["records"])


def summary_lines(doc: dict) -> list[str]:
    lines = []
    for key, recs in _by_row(doc["records"]).items():
        c = Counter(r["verdict"] for r in recs)
        known = sum(1 for r in recs if r["verdict"] in FAILING and "deviation" in r)
        xpass = sum(1 for r in recs if r["verdict"] == "pass" and "deviation" in r)
        parts = [f"{c['pass']} pass"]
        if known:
            parts.append(f"{known} known deviation")
        new = sum(1 for r in recs if unexpected(r))
        if new:
            parts.append(f"{new} FAIL")
        for v in ("unsupported", "crash", "timeout"):
            if c[v]:
                parts.append(f"{c[v]} {v}")
        if xpass:
            parts.append(f"{xpass} unexpected pass")
        lines.append(f"{key}: " + ", ".join(parts))
    for name, d in doc["backends"].items():
        if "missing" in d:
            lines.append(f"{name}: missing ({d['missing'][:100]})")
    for e in doc.get("stale_deviations", []):
        lines.append(f"stale deviation entry in {e['backend']}.toml: {e['id']} ({e['check']})")
    return lines


def _by_row(records) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for r in records:
        out[row_key(r)].append(r)
    return dict(out)


def merge(docs: list[dict]) -> dict:
    """One document from several runs; a record seen twice keeps the later run's verdict."""
    records: dict = {}
    backends: dict = {}
    environments = []
    for d in docs:
        for r in d["records"]:
            records[(r["id"], r["check"])] = r
        for name, desc in d["backends"].items():
            if "missing" not in desc or name not in backends:
                prev = backends.get(name, {})
                merged = dict(desc)
                if "devices" in prev and "devices" in desc:
                    merged["devices"] = sorted(set(prev["devices"]) | set(desc["devices"]))
                    merged["dtypes"] = {**prev.get("dtypes", {}), **desc.get("dtypes", {})}
                backends[name] = merged
        environments.extend(d.get("environments", [d["environment"]] if "environment" in d else []))
    from .deviations import Deviations

    stale_now = [vars(e) for e in Deviations.load().stale(list(records.values()))]
    out = {"environments": environments, "backends": backends,
           "records": sorted(records.values(), key=lambda r: (r["id"], r["check"])),
           "stale_deviations": stale_now}
    for extra in ("bench",):
        rows = [row for d in docs for row in d.get(extra, [])]
        if rows:
            out[extra] = rows
    return out


# --- the blocks -----------------------------------------------------------------------------------


def blocks(doc: dict) -> list:
    records = doc["records"]
    rows = _by_row(records)
    out: list = [("h1", "mmconf conformance report")]
    out.append(("p", "Every golden case through every backend, device, mode and dtype, judged against the "
                "exact reference under the error model of [SPEC.md](../../conformance/SPEC.md). "
                f"Generated {doc.get('generated', '')}."))

    out.append(("h2", "Summary"))
    header = ["backend/mode (device)", "version", "pass", "known deviations", "new failures",
              "unsupported", "crash", "timeout", "unexpected passes"]
    table = []
    for key, recs in rows.items():
        c = Counter(r["verdict"] for r in recs)
        b = recs[0]["backend"]
        table.append([key, doc["backends"].get(b, {}).get("version", "?"), c["pass"],
                      sum(1 for r in recs if r["verdict"] in FAILING and "deviation" in r),
                      sum(1 for r in recs if unexpected(r)), c["unsupported"], c["crash"], c["timeout"],
                      sum(1 for r in recs if r["verdict"] == "pass" and "deviation" in r)])
    out.append(("table", header, table))
    missing = [f"{n}: {d['missing']}" for n, d in doc["backends"].items() if "missing" in d]
    if missing:
        out.append(("p", "Not installed or not loadable here: " + "; ".join(missing)))

    out.append(("h2", "Conformance by clause"))
    out.append(("p", "✓ conforms on every case citing the clause; ✗ n: n records deviate; "
                "– only unsupported; blank: no case ran. Clauses cited by no case here are left out."))
    cols = list(rows)
    status: dict = defaultdict(dict)
    for key, recs in rows.items():
        for r in recs:
            for c in _blamed_clauses(r):
                status[c].setdefault(key, Counter())[r["verdict"]] += 1
    table = []
    for cid, title in spec.clauses().items():
        if cid not in status:
            continue
        cells = []
        for key in cols:
            c = status[cid].get(key)
            if not c:
                cells.append("")
            elif sum(c[v] for v in FAILING):
                cells.append(f"✗ {sum(c[v] for v in FAILING)}")
            elif c["pass"]:
                cells.append("✓")
            else:
                cells.append("–")
        table.append([f"{cid} {title}", *cells])
    out.append(("table", ["clause", *cols], table))

    out.extend(_findings(records))
    out.extend(_capabilities(records))
    out.extend(_kinks(records))

    out.append(("h2", "Environment"))
    envs = doc.get("environments") or [doc.get("environment", {})]
    for env in envs:
        out.append(("table", ["", ""], [[k, v] for k, v in env.items()]))
    versions = [[n, d.get("version", "-"), ", ".join(d.get("devices", [])), d.get("threads") or "",
                 d.get("description", d.get("missing", ""))] for n, d in doc["backends"].items()]
    out.append(("table", ["backend", "version", "devices", "threads", "what it runs"], versions))
    stale = doc.get("stale_deviations", [])
    if stale:
        out.append(("h2", "Stale expected-deviation entries"))
        out.append(("table", ["backend", "pattern", "check", "clause"],
                    [[e["backend"], e["id"], e["check"], e["clause"]] for e in stale]))
    return out


def _blamed_clauses(r: dict) -> list[str]:
    """A listed deviation names the clause it breaks; other records speak for all their clauses."""
    if r["verdict"] in FAILING and "deviation" in r:
        return [r["deviation"]["clause"]]
    return r["clauses"]


def _findings(records) -> list:
    groups: dict = defaultdict(list)
    for r in records:
        if r["verdict"] in FAILING:
            d = r.get("deviation")
            key = (r["backend"], r["mode"], r["device"], d["pattern"] if d else f"{r['family']}:{r['check']}",
                   d["clause"] if d else r["clauses"][0])
            groups[key].append(r)
    out: list = [("h2", "Findings")]
    if not groups:
        out.append(("p", "No deviations: every record conforms."))
        return out
    out.append(("p", "One entry per deviation: the clause broken, why (for listed deviations), "
                "the records it covers, expected against got for the smallest of them, and a "
                "self-contained repro in the backend's own framework."))
    for k, ((backend, mode, device, _, clause), recs) in enumerate(sorted(groups.items()), 1):
        r = min(recs, key=lambda r: (len(json.dumps(r.get("expected", ""))), r["id"]))
        d = r.get("deviation")
        title = spec.clauses().get(clause, "")
        status = "known deviation" if d else "NEW FAILURE"
        out.append(("h3", f"F{k}. {backend}/{mode} ({device}): {clause} {title} [{status}]"))
        lines = []
        if d:
            lines.append(f"Reason: {d['reason']}")
        lines.append(f"{len(recs)} record(s), e.g. `{r['id']}` ({r['check']}): {r.get('detail', '')}")
        if "expected" in r:
            lines.append(f"Expected `{_short(r['expected'])}`, got `{_short(r.get('got'))}`"
                         + (f" at {r['at']}" if "at" in r else "") + f" (bound {r.get('bound', 0):.3g}).")
        out.append(("p", " ".join(lines)))
        if r.get("repro"):
            out.append(("code", r["repro"]))
    return out


def _short(v) -> str:
    s = json.dumps(v)
    return s if len(s) <= 160 else s[:157] + "..."


def _capabilities(records) -> list:
    cap: dict = defaultdict(dict)
    for r in records:
        key = f"{r['backend']}/{r['mode']}"
        cell = cap[r["dtype"]].setdefault((key, r["device"]), set())
        cell.add("unsupported" if r["verdict"] == "unsupported" else "ran")
    cols = sorted({k for d in cap.values() for k in d})
    table = []
    for dtype in spec_dtypes():
        if dtype not in cap:
            continue
        cells = []
        for col in cols:
            s = cap[dtype].get(col)
            cells.append("" if not s else "✓" if s == {"ran"} else "✗" if s == {"unsupported"} else "partly")
        table.append([dtype, *cells])
    return [("h2", "Capabilities"),
            ("p", "✓ runs; ✗ unsupported (a capability gap, not a conformance failure); partly: "
             "some checks unsupported (for instance the backward pass)."),
            ("table", ["dtype", *[f"{k} ({d})" for k, d in cols]], table)]


def spec_dtypes():
    return ("float16", "bfloat16", "float32", "float64")


def _kinks(records) -> list:
    seen: dict = defaultdict(Counter)
    for r in records:
        if r["check"] == "grad" and "kink_choice" in r:
            seen[row_key(r)][r["kink_choice"]] += 1
    table = [[k, ", ".join(f"{choice} ({n} cases)" for choice, n in c.most_common())] for k, c in seen.items()]
    return [("h2", "Gradient at kinks"),
            ("p", "The factor each backend returns for d max(0, z)/dz at z == 0 (p = 1; MML-8.2): any "
             "value in [0, 1] conforms, 0 is canonical."),
            ("table", ["backend/mode (device)", "choice at z == 0"], table)]


# --- rendering ------------------------------------------------------------------------------------


def to_markdown(bs: list) -> str:
    out = []
    for b in bs:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1])
        elif kind == "p":
            out.append(b[1])
        elif kind == "code":
            out.append("```python\n" + b[1].rstrip() + "\n```")
        elif kind == "table":
            header, rows = b[1], b[2]
            lines = ["| " + " | ".join(str(h) for h in header) + " |",
                     "|" + "|".join("---" for _ in header) + "|"]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def to_html(bs: list, title: str = "mmconf report") -> str:
    import re

    def inline(text: str) -> str:
        t = html.escape(text)
        t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
        return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', t)

    body = []
    for b in bs:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{inline(b[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{inline(b[1])}</p>")
        elif kind == "code":
            body.append(f"<pre><code>{html.escape(b[1])}</code></pre>")
        elif kind == "img":
            body.append(f'<p><img src="{html.escape(b[1])}" alt="{html.escape(b[2])}"></p>')
        elif kind == "table":
            head = "".join(f"<th>{inline(str(h))}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{inline(str(c))}</td>" for c in row) + "</tr>" for row in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:110em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
             "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}"
             "th{background:#f3f3f3}pre{background:#f6f8fa;padding:1em;overflow:auto}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(doc: dict, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    bs = blocks(doc)
    write_atomic(out_dir / "conformance.md", to_markdown(bs))
    write_atomic(out_dir / "index.html", to_html(bs))
