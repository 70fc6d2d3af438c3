"""Reports: results.json, conformance.md and a static index.html built from the same blocks.

The report is a list of blocks (headings, paragraphs, tables, code) rendered twice, to Markdown
and to HTML, so the two always show the same tables. `merge` joins the results of several
machines (a CPU box and a GPU box, say) into one document.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

from . import spec
from .files import write_atomic
from .floats import DTYPES, encode
from .record import FAILING, Tally, known, unexpected


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


def conforms(doc: dict) -> bool:
    """True when every failing record is a listed deviation."""
    return not any(unexpected(r) for r in doc["records"])


def summary_lines(doc: dict) -> list[str]:
    lines = []
    for key, recs in _by_row(doc["records"]).items():
        t = Tally.of(recs)
        parts = [f"{t.passed} pass"]
        if t.known:
            parts.append(f"{t.known} known deviation")
        if t.new:
            parts.append(f"{t.new} FAIL")
        if t.unsupported:
            parts.append(f"{t.unsupported} unsupported")
        if t.unexpected_pass:
            parts.append(f"{t.unexpected_pass} unexpected pass")
        how = [f"{getattr(t, v)} {v}" for v in ("crash", "timeout") if getattr(t, v)]
        lines.append(f"{key}: " + ", ".join(parts) + (f" (of the failing: {', '.join(how)})" if how else ""))
    for name, d in doc["backends"].items():
        if "missing" in d:
            lines.append(f"{name}: missing ({d['missing'][:100]})")
    for e in doc.get("stale_deviations", []):
        lines.append(f"stale deviation entry in {e['backend']}.toml: {_entry_label(e)}")
    for (backend, label, clause), (n, clauses, broad) in sorted(deviation_entries(doc["records"]).items()):
        if broad:
            lines.append(f"broad deviation entry in {backend}.toml: {label} ({clause}) has no `when`, and "
                         f"explains {n} failing record(s) of cases about {len(clauses)} clause(s)")
    return lines


def timing_table(doc: dict):
    """(header, rows, note) of where a run's seconds went, one row per backend, device and mode,
    the longest first; None for a document without timings (a merged report, older results)."""
    from .runner import Timings

    t = doc.get("timings")
    if not t:
        return None
    parts = list(Timings.PARTS)
    rows = [[r["backend"], r["device"], r["mode"], r["cases"], r.get("workers", ""), *(f"{r[p]:.1f}" for p in parts),
             f"{sum(r[p] for p in parts):.1f}"] for r in sorted(t["rows"], key=lambda r: -sum(r[p] for p in parts))]
    note = (f"Seconds, summed over each row's requests; the run took {t['wall_s']:.0f} s of wall time with "
            f"{t['jobs']} worker process(es) at once; workers: the worker processes that ran the row (a lane's "
            "first and its helpers). " + "; ".join(f"{p}: {what}" for p, what in Timings.PARTS.items()) + ".")
    return ["backend", "device", "mode", "cases", "workers", *parts, "total"], rows, note


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
    # an entry is stale when every run that covered its backend found it stale
    runs = [({r["backend"] for r in d["records"]},
             {json.dumps(e, sort_keys=True) for e in d.get("stale_deviations", [])}) for d in docs]
    candidates = set().union(*(stale for _, stale in runs)) if runs else set()
    stale_now = [json.loads(k) for k in sorted(candidates)
                 if all(k in stale for backends, stale in runs if json.loads(k)["backend"] in backends)]
    out = {"environments": environments, "backends": backends,
           "records": sorted(records.values(), key=lambda r: (r["id"], r["check"])),
           "stale_deviations": stale_now}
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
              "unsupported", "failing by crash", "failing by timeout", "unexpected passes"]
    table = []
    for key, recs in rows.items():
        t = Tally.of(recs)
        table.append([key, doc["backends"].get(recs[0]["backend"], {}).get("version", "?"), t.passed, t.known,
                      t.new, t.unsupported, t.crash, t.timeout, t.unexpected_pass])
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
    timings = timing_table(doc)
    if timings:
        out.append(("h2", "Where the run's time went"))
        out.append(("p", timings[2]))
        out.append(("table", timings[0], timings[1]))
    capture = captures(records)
    if capture:
        out.append(("h2", "Capture under a compiler"))
        out.append(("table", ["backend/mode", "capture"],
                    [[k, _line(fmt_capture(v))] for k, v in sorted(capture.items())]))
    entries = deviation_entries(records)
    if entries:
        out.append(("h2", "Expected-deviation entries"))
        out.append(("p", "How many failing records each entry explains, and the clauses their cases are "
                    "about. An entry matches by where (backend-device-mode-dtype), when (the input features "
                    "under which it shows) and check; one with no `when` explains every failure of its rows "
                    "(flagged broad)."))
        out.append(("table", ["backend", "entry", "clause", "records explained", "clauses of their cases", ""],
                    [[b, _code(label), clause, n, ", ".join(sorted(clauses)), "broad" if broad else ""]
                     for (b, label, clause), (n, clauses, broad) in sorted(entries.items())]))
    stale = doc.get("stale_deviations", [])
    if stale:
        out.append(("h2", "Stale expected-deviation entries"))
        out.append(("table", ["backend", "entry", "clause"],
                    [[e["backend"], _code(_entry_label(e)), e["clause"]] for e in stale]))
    return out


def captures(records) -> dict:
    """backend/mode -> the graph breaks its compiler met, for the modes that report them."""
    out: dict = {}
    for r in records:
        if r.get("capture") is not None:
            out.setdefault(f"{r['backend']}/{r['mode']}", set()).update(r["capture"])
    return out


def fmt_capture(breaks) -> str:
    if not breaks:
        return "compiles to one graph"
    return "compiles with graph breaks: " + "; ".join(sorted(breaks))


def deviation_entries(records) -> dict:
    """(backend, label, clause) of each entry that explains a failing record -> (records it
    explains, the clauses of their cases, whether it is broad: no `when`)."""
    out: dict = {}
    for r in records:
        if known(r):
            d = r["deviation"]
            key = (r["backend"], _entry_label(d), d["clause"])
            n, clauses, _ = out.get(key, (0, set(), False))
            out[key] = (n + 1, clauses | set(r["clauses"]), "where" in d and not d.get("when"))
    return out


def _entry_label(d: dict) -> str:
    """An entry's name in a report: its label, or in results written before entries matched by
    mechanism, its id pattern."""
    return d.get("label") or d.get("pattern") or d.get("id", "?")


def _blamed_clauses(r: dict) -> list[str]:
    """A listed deviation names the clause it breaks; other records speak for all their clauses."""
    if known(r):
        return [r["deviation"]["clause"]]
    return r["clauses"]


def _findings(records) -> list:
    groups: dict = defaultdict(list)
    for r in records:
        if r["verdict"] in FAILING:
            d = r.get("deviation")
            key = (r["backend"], r["mode"], r["device"],  # entries may share a label and a clause
                   f"{_entry_label(d)}:{d['reason']}" if d else f"{r['family']}:{r['check']}",
                   d["clause"] if d else (r["clauses"] or ["no clause"])[0])  # a user's case may name none
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
            lines.append(f"Reason: {_line(d['reason'])}")
        lines.append(f"{len(recs)} record(s), e.g. {_code(r['id'])} ({r['check']}): {_line(r.get('detail', ''))}")
        if "expected" in r:
            bound = float(r.get("bound") or 0)  # results.json writes an infinite bound as 'inf'
            lines.append(f"Expected {_code(_short(r['expected']))}, got {_code(_short(r.get('got')))}"
                         + (f" at {r['at']}" if "at" in r else "") + f" (bound {bound:.3g}).")
        out.append(("p", " ".join(lines)))
        if r.get("repro"):
            out.append(("code", r["repro"]))
    return out


def _line(text) -> str:
    """Text from a file or a kernel (an id, an error message) on one line: a newline in it would
    start a heading or a block of its own in Markdown."""
    return " ".join(str(text).split())


def _code(text) -> str:
    """A Markdown code span holding `text` whatever backticks it has: the fence is longer than any
    run of them inside (CommonMark), and a space pads a backtick at either end."""
    text = _line(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


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
    for dtype in DTYPES:
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


def to_markdown(bs: list, table=None) -> str:
    """Markdown of the blocks; `table(header, rows)` renders tables where given (tabulate, say)."""
    out = []
    for b in bs:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1])
        elif kind == "p":
            out.append(b[1])
        elif kind == "code":
            out.append("```python\n" + b[1].rstrip() + "\n```")
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})")
        elif kind == "table" and table is not None:
            out.append(table(b[1], [[_cell(c) for c in row] for row in b[2]]))
        elif kind == "table":
            header, rows = b[1], b[2]
            lines = ["| " + " | ".join(str(h) for h in header) + " |",
                     "|" + "|".join("---" for _ in header) + "|"]
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _cell(c) -> str:
    return _line(c).replace("|", "\\|")


SAFE_LINK = re.compile(r"^(https?://|[\w./#-]+$)")  # the web, or a path or anchor of the report's own


def _link(m) -> str:
    text, url = m.group(1), m.group(2)
    return f'<a href="{url}">{text}</a>' if SAFE_LINK.match(html.unescape(url)) else m.group(0)


def to_html(bs: list, title: str = "mmconf report") -> str:
    def inline(text: str) -> str:
        t = html.escape(text)
        t = re.sub(r"(`+) ?(.+?) ?\1(?!`)", r"<code>\2</code>", t)  # a fence closes on its own length
        return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", _link, t)  # a javascript: link stays text

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
    if (out_dir / "bench.html").exists():
        bs.insert(2, ("p", "Benchmark: [bench.html](bench.html) ([bench.md](bench.md))."))
    write_atomic(out_dir / "conformance.md", to_markdown(bs))
    write_atomic(out_dir / "index.html", to_html(bs))


# --- benchmark reports ----------------------------------------------------------------------------


def is_bench(doc: dict) -> bool:
    return doc.get("kind") == "mmconf-bench"


def problem(doc) -> str | None:
    """What keeps `doc` (from a file) from being reported, or None: it is rendered once, in memory,
    so that a missing key or a wrong type is found before anything is written."""
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        return "expected an object with a list of 'records'"
    try:
        if is_bench(doc):
            bench_blocks(merge_bench([doc]))
        else:
            blocks(merge([doc]))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def merge_bench(docs: list[dict]) -> dict:
    """One bench document from several runs (machines): the records side by side, each with its
    run's ratios; a machine that appears twice is told apart by the run's date."""
    seen: set = set()
    environments, records, backends = [], [], {}
    for d in docs:
        for env in d.get("environments") or [d["environment"]]:
            name = env.get("machine", "?")
            if name in seen:
                name = f"{name} ({d.get('generated', len(seen))})"
            seen.add(name)
            environments.append({**env, "machine": name})
        for r in d["records"]:
            records.append({**r, "machine": name if "environment" in d else r.get("machine")})
        for b, desc in d["backends"].items():
            if b not in backends or "missing" in backends[b]:
                backends[b] = desc
    first = docs[0]
    return {"kind": "mmconf-bench", "format": 1, "environments": environments, "settings": first.get("settings", {}),
            "baseline": first.get("baseline"), "baseline_found": any(d.get("baseline_found") for d in docs),
            "backends": backends, "records": records}


def write_bench(doc: dict, out_dir: Path, gates=()) -> None:
    """bench.json, the plots, bench.md (tabulate tables), bench.html; index.html links to it.
    `gates`: (title, compare.Gate) pairs, each shown as a section of its own."""
    from tabulate import tabulate

    from .bench import plots

    out_dir = Path(out_dir)
    write_results(doc, out_dir / "bench.json")
    bs = bench_blocks(doc, plots.write(doc, out_dir), gates)
    table = lambda header, rows: tabulate(rows, header, tablefmt="github", disable_numparse=True)  # noqa: E731
    write_atomic(out_dir / "bench.md", to_markdown(bs, table))
    write_atomic(out_dir / "bench.html", to_html(bs, "mmconf benchmark"))
    results = out_dir / "results.json"
    if results.exists():  # a conformance report here: render it again, now with the link
        write_report(json.loads(results.read_text(encoding="utf-8")), out_dir)
    else:
        write_atomic(out_dir / "index.html", to_html([("h1", "mmconf reports"), (
            "p", "Benchmark: [bench.html](bench.html) ([bench.md](bench.md), [bench.json](bench.json)). "
            "No conformance run in this directory (`mmconf run --out` it here).")]))


def fmt_time(s: float | None) -> str:
    if s is None:
        return ""
    if s == 0:
        return "0"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def fmt_bytes(b: float | None) -> str:
    if b is None:
        return ""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} B"


def _machine_labels(doc: dict) -> bool:
    return len({r.get("machine") for r in doc["records"]}) > 1


def fmt_ratio(r: dict, prefix: str = "ratio") -> str:
    """'0.0571 [0.0562, 0.0580]': the estimate and its 95% interval."""
    if r.get(prefix) is None:
        return ""
    lo, hi = r.get(f"{prefix}_lo"), r.get(f"{prefix}_hi")
    return f"{r[prefix]:.3g}" + ("" if lo is None else f" [{lo:.3g}, {hi:.3g}]")


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.2g}%"


def bench_row(r: dict, baseline: str | None, machines: bool) -> list:
    label = f"{r['backend']}/{r['mode']}"
    ratio = "1 (baseline)" if label == baseline else fmt_ratio(r)
    peak = ""
    if r.get("peak_bytes") is not None:
        peak = (f"+{fmt_bytes(r['peak_bytes'])} RSS" if r["peak_kind"] == "rss growth"
                else f"{fmt_bytes(r['peak_bytes'])} ({r['peak_kind']})")
    threads = "" if r.get("cpu_threads") is None else f"{r['threads'] or '?'} ({r['cpu_threads']:.1f})"
    flags = [f for f in ("noisy", "unsteady", "contended") if r.get(f)]  # r.get: bench.json files of format 1 lack some
    cells = [label, r["device"], r["dtype"], fmt_time(r["median_s"]),
             f"{fmt_time(r['iqr_s'])} ({100 * r['iqr_s'] / r['median_s']:.0f}%)", ratio,
             f"{r['blocks']} x {r['calls_per_block']}" if r.get("blocks") else "", threads,
             "" if r["gbps"] is None else f"{r['gbps']:.3g}", _pct(r["pct_bandwidth"]),
             " / ".join(_pct(r.get(k)) for k in ("pct_fresh", "pct_fresh_huge")) if r.get("pct_fresh") else "",
             fmt_time(r["compile_s"]), peak, ", ".join(flags)]
    return ([r.get("machine", "")] if machines else []) + cells


BENCH_HEADER = ["backend/mode", "device", "dtype", "median", "IQR", "ratio [95% CI]", "blocks x calls",
                "threads (used)", "GB/s", "% of copy", "% of fresh copy (4K / huge)", "compile", "peak memory",
                "flags"]


def _method(doc: dict) -> list:
    from .bench.run import CONTENDED, SLACK, UNSTEADY

    s = doc.get("settings", {})
    return [("p", (
        "Method: every backend runs in a worker process of its own, all alive together, with "
        f"{s.get('threads')} thread(s) fixed before the framework is imported. For each size and pass the rows of "
        "every backend and mode are prepared (first call timed apart: `compile` is what it cost beyond a median "
        "call; then a warm-up), and then measured **interleaved**: in each round every row runs one block of "
        f"back-to-back calls lasting about {1e3 * s.get('block_s', 0):.3g} ms (one untimed call first), in a "
        "shuffled order, so drift, turbo and neighbours hit all rows of a round alike. A ratio is the median of the "
        "per-round ratios of two rows, with a distribution-free 95% confidence interval (the order statistics of "
        "the sign test; no assumption on the timing distribution). Rounds go on until every ratio's interval "
        f"reaches at most {100 * s.get('precision', 0):.3g}% from its estimate, or the budget of "
        f"{s.get('budget_s')} s per row is spent (at least {s.get('min_blocks')} blocks). Each row is measured in "
        f"{s.get('processes', 1)} worker process(es) one after another, workers started afresh for each: the "
        "interval is the hull of every process's interval, since a kernel's speed can depend on its process. "
        "`blocks x calls` says how many blocks of how many calls a row got. Every call returns only once its "
        "outputs are ready and computes fresh gradients.")),
        ("p", (
            "Threads: the framework's setting, and in brackets the CPU seconds per second its worker's threads "
            "really used during the blocks. A row is flagged **contended** when other processes (from /proc/stat, "
            f"less the worker's own CPU time) left it fewer CPUs than its threads, less {SLACK:g}, or the "
            f"hypervisor stole more than {100 * CONTENDED:.0f}% of its time: its ratio is then not a fair figure "
            "and the gate calls it INCONCLUSIVE. bench.json also records each row's run-queue wait and the drift "
            "of a calibration kernel timed between rounds on each CPU in turn. `CPU speed swing` is that kernel's "
            "90th over its 10th percentile: in a VM a CPU's speed changes with what runs beside it on the host, and "
            "pairing cancels only what changes slower than a round; rows of a size and pass whose swing passed "
            f"{100 * UNSTEADY:.0f}% are flagged **unsteady**: their intervals are wider for it, and still their ratios "
            "can move from run to run by more than the interval shows (what runs beside the VM changes between runs "
            "too), so an unsteady table is indicative, not a published figure. A row whose "
            "ratio's interval (a reference row's: its median's) reaches more than "
            f"{100 * s.get('noisy', 0.1):.0f}% from the estimate is flagged noisy.")),
        ("p", (
            "Roofline: GB/s counts the least traffic a call needs (fwd reads N*C elements; fwd+bwd also writes the "
            "N*C gradient). `% of copy` is against a copy into a reused buffer (above 100%: the data came from "
            "cache); a call that returns a fresh gradient must also map new memory and fault in its pages, so "
            "fwd+bwd rows also give `% of fresh copy`: against a copy into a freshly mapped output of the "
            "gradient's size, with 4 KiB pages and with transparent huge pages (both measured in the same run; "
            "outputs under 1 MiB come from the allocator's cache and get no such figure). Peak memory: the "
            "allocator's peak where the framework reports it (inputs included), else the growth of the resident "
            "set over the first call."))]


def bench_blocks(doc: dict, plot_files=(), gates=()) -> list:
    from .bench import grid

    records = doc["records"]
    envs = doc.get("environments") or [doc["environment"]]
    machines = _machine_labels(doc)
    baseline = doc.get("baseline")
    out: list = [("h1", "mmconf benchmark"), ("p", (
        f"Generated {doc.get('generated', '')}. The call: `multi_margin_loss(x, target, p=1, margin=1, "
        "reduction='mean')` on an (N, C) batch, forward (`fwd`) or forward and input gradient (`fwd+bwd`)."))]
    out.extend(_method(doc))
    if doc.get("baseline_found"):
        out.append(("p", f"Ratio: the row's time over the baseline's, {baseline}, for the same machine, device, "
                    "dtype, size and pass, paired round by round in the same run (below 1: faster than the "
                    "baseline)."))
    else:
        out.append(("p", f"The baseline {baseline} is not in this run: ratios are left empty "
                    "(`--baseline BACKEND/MODE` names another)."))
    env_rows = [[e.get("machine"), e.get("cpu"), e.get("threads"), fmt_bytes(e.get("llc_bytes")),
                 "; ".join(f"{dev}: {b['gbps']:.3g} GB/s" if b.get("gbps") else f"{dev}: {b.get('error', '?')}"
                           for dev, b in e.get("bandwidth", {}).items()),
                 "; ".join(f"{fmt_bytes(int(n))}: {f['small'].get('gbps') or 0:.3g} / {f['huge'].get('gbps') or 0:.3g}"
                           for n, f in e.get("fresh_copy", {}).items()),
                 "" if e.get("cpu_swing") is None else f"{100 * e['cpu_swing']:.0f}%"] for e in envs]
    out.append(("table", ["machine", "CPU", "threads", "last-level cache", "copy bandwidth",
                          "fresh-output copy, GB/s (4K / huge pages)", "CPU speed swing"], env_rows))

    ok = [r for r in records if r["status"] == "ok"]
    contended = [r for r in ok if r.get("contended")]
    if contended:
        out.append(("p", f"**{len(contended)} row(s) measured under contention** (flag `contended`): their times "
                    "and ratios are distorted by other work on the machine and are not published figures."))
    llc = envs[0].get("llc_bytes")
    for n, c in sorted({(r["N"], r["C"]) for r in ok}, key=lambda nc: (nc[0] * nc[1], nc)):
        why = grid.why(n, c, llc)
        size = n * c * 4
        where = "" if not llc else f"; {'larger than' if size > llc else 'fits in'} the {fmt_bytes(llc)} LLC"
        if why == grid.BEYOND_CACHE:
            where += " (this size is chosen as the least of N x 4096 holding 4x the measured LLC)"
        for p in grid.PASSES:
            rows = sorted((r for r in ok if (r["N"], r["C"], r["pass"]) == (n, c, p)),
                          key=lambda r: (r.get("machine") or "", r["device"], DTYPES.index(r["dtype"]),
                                         r["median_s"]))
            if not rows:
                continue
            out.append(("h2", f"{n} x {c}, {p}" + (f" ({why})" if why else "")))
            out.append(("p", f"x holds {n * c:,} elements: {fmt_bytes(size)} in float32{where}."))
            out.append(("table", (["machine"] if machines else []) + BENCH_HEADER,
                        [bench_row(r, baseline, machines) for r in rows]))
    for title, gate in gates:
        out.extend(comparison_blocks(gate, title))
    if plot_files:
        out.append(("h2", "Plots"))
        out.append(("p", "Bars: 95% confidence intervals. Also as SVG beside the PNGs."))
        out.extend(("img", f, alt) for f, alt in plot_files)
    other = [r for r in records if r["status"] != "ok"]
    if other:
        out.append(("h2", "Not measured"))
        out.append(("p", "unsupported: the backend lacks the dtype, device or pass (a capability gap, not an error); "
                    "error: it raised on a valid call; crash, timeout: the worker died or hung in the row."))
        out.append(("table", ["backend/mode", "device", "dtype", "size", "pass", "status", "detail"],
                    [[f"{r['backend']}/{r['mode']}", r["device"], r["dtype"], f"{r['N']}x{r['C']}", r["pass"],
                      r["status"], r["detail"][:160]] for r in other]))
    missing = [f"{n}: {d['missing'][:160]}" for n, d in doc["backends"].items() if "missing" in d]
    if missing:
        out.append(("p", "Not installed or not loadable here: " + "; ".join(missing)))
    out.append(("h2", "Environment"))
    for e in envs:
        flat = {k: v for k, v in e.items() if k not in ("bandwidth", "fresh_copy", "versions", "thread_controls")}
        flat.update({f"bandwidth {d}": b.get("method", b.get("error")) for d, b in e.get("bandwidth", {}).items()})
        flat.update({f"fresh copy {fmt_bytes(int(n))} ({pages})": f[pages].get("method", f[pages].get("error"))
                     for n, f in e.get("fresh_copy", {}).items() for pages in ("small", "huge")})
        flat.update({f"version {b}": v for b, v in e.get("versions", {}).items()})
        flat.update({f"threads {b}": "; ".join(v) or "environment variables only"
                     for b, v in e.get("thread_controls", {}).items()})
        out.append(("table", ["", ""], [[k, v] for k, v in flat.items()]))
    return out


GATE_WORDS = {0: "passed", 1: "FAILED: a row is SLOWER", 3: "INCONCLUSIVE: no row is slower, but not every row "
              "could be decided"}


def comparison_table(gate) -> tuple[list, list]:
    rows = []
    for ch in gate.changes:
        r = ch.row
        fmt = fmt_time if ch.basis == "median" else (lambda v: f"{v:.3g}")
        interval = "" if ch.interval is None else f"[{ch.interval[0]:.3f}, {ch.interval[1]:.3f}]"
        rows.append([f"{r['backend']}/{r['mode']}", r["device"], r["dtype"], f"{r['N']}x{r['C']}", r["pass"],
                     ch.basis, "" if ch.old is None else fmt(ch.old), "" if ch.new is None else fmt(ch.new),
                     "" if ch.change is None else f"{100 * ch.change:+.1f}%", interval, ch.verdict, ch.note])
    return ["backend/mode", "device", "dtype", "size", "pass", "compared", "before", "now", "change",
            "now / before, 95% CI", "verdict", "note"], rows


def comparison_blocks(gate, title: str) -> list:
    header, rows = comparison_table(gate)
    s = 100 * gate.max_slowdown
    return [("h2", f"Regression check {title}"),
            ("p", f"At most {s:.0f}% slower allowed. SLOWER: the whole interval of now / before lies above "
             f"{1 + gate.max_slowdown:.3g}; FASTER: below {1 / (1 + gate.max_slowdown):.3g}; same: between the two; "
             "INCONCLUSIVE: the interval reaches across a limit, or the row was measured under contention. "
             f"Result: **{GATE_WORDS[gate.exit_status]}**."),
            ("table", header, rows)]
