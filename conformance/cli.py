"""The `mmconf` command line (also `python -m conformance`).

Exit status: 0 success (and, for `run` and `check`, conformance), 1 nonconformance, a failed
verification or (`bench --compare`, `--before`) a row SLOWER, 2 bad usage or a malformed input
file, 3 (`bench`) no row slower but one INCONCLUSIVE: its interval too wide to decide, or contended.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .caseio import CaseError
from .deviations import DeviationError
from .floats import DTYPES


def _progress(stream=sys.stderr):
    """A one-line progress display on a terminal; nothing otherwise."""
    if not stream.isatty():
        return None
    state: dict = {}
    start = time.monotonic()

    def show(backend: str, done: int, total: int) -> None:
        state[backend] = (done, total)
        d = sum(v[0] for v in state.values())
        t = sum(v[1] for v in state.values())
        parts = " ".join(f"{b} {x}/{y}" for b, (x, y) in state.items())
        width = 24
        bar = "#" * int(width * d / max(t, 1))
        stream.write(f"\r[{bar:<{width}}] {d}/{t} {time.monotonic() - start:5.0f}s  {parts}"[:160] + "\033[K")
        stream.flush()
        if d == t:
            stream.write("\n")

    return show


def _split(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def _select_cases(args) -> list:
    from .caseio import load_cases

    cases = load_cases(args.cases or [], golden=not args.cases or args.golden)
    if args.dtypes:
        cases = [c for c in cases if c.dtype in _split(args.dtypes)]
    if args.k:
        cases = [c for c in cases if any(k in f"{c.dtype}-{c.id}" for k in _split(args.k))]
    return cases


def _backends(arg: str | None) -> list[str]:
    from impls import registry

    known = registry()
    names = _split(arg) or list(known)
    unknown = [n for n in names if n not in known and not n.startswith("check:")]
    if unknown:
        raise SystemExit(f"mmconf: unknown backend(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return names


# --- commands -------------------------------------------------------------------------------------


def cmd_cases(args) -> int:
    from cases.generator import write_store

    from .caseio import dumps, golden_dir, verify_manifest
    from .files import write_atomic

    if args.action == "import":
        if args.source != "torch-opinfo":
            print(f"mmconf cases import: {'unknown source ' + repr(args.source) if args.source else 'needs a source'}; "
                  "known: torch-opinfo", file=sys.stderr)
            return 2
        from cases.torch_opinfo import OP, cases

        try:
            imported = cases()
        except ImportError as e:  # torch, or a module its test inputs need
            print(f"mmconf cases import torch-opinfo: cannot import PyTorch's OpInfo: {e} "
                  "(install the torch extra: pip install -c constraints.txt -e '.[torch]')", file=sys.stderr)
            return 2
        except LookupError as e:  # a torch whose OpInfo list lacks the op
            print(f"mmconf cases import torch-opinfo: {e}", file=sys.stderr)
            return 2
        out = Path(args.out or "torch-opinfo.json")
        write_atomic(out, dumps(imported, {"source": f"{OP} OpInfo of the installed torch (mmconf cases import)"}))
        errors = sum(c.error is not None for c in imported)
        print(f"wrote {len(imported)} cases ({errors} invalid calls) to {out}; run them with "
              f"`mmconf run --cases {out}`")
        return 0
    if args.source:
        print(f"mmconf cases {args.action}: takes no source", file=sys.stderr)
        return 2
    if args.action == "generate":
        manifest = write_store(golden_dir())
        print(f"wrote {len(manifest['files'])} family files and {golden_dir() / 'MANIFEST.json'}")
        return 0
    # verify: the store matches its manifest, and regenerating it gives the same bytes
    verify_manifest(golden_dir())
    with tempfile.TemporaryDirectory() as tmp:
        fresh = write_store(Path(tmp))
        drift = _diff_stores(golden_dir(), Path(tmp), fresh)
    if drift:
        print("the golden store differs from what the generator writes now:\n" + drift)
        print("regenerate with `mmconf cases generate` and review the diff")
        return 1
    print(f"golden store verified: {len(fresh['files'])} files match the manifest and the generator")
    return 0


def _diff_stores(old_dir: Path, new_dir: Path, manifest: dict, limit: int = 40) -> str:
    import difflib

    lines = []
    old_files = {p.name for p in old_dir.glob("*.json")}
    for name in sorted(old_files | set(manifest["files"]) | {"MANIFEST.json"}):
        a, b = old_dir / name, new_dir / name
        ta = a.read_text().splitlines() if a.exists() else []
        tb = b.read_text().splitlines() if b.exists() else []
        if ta != tb:
            diff = list(difflib.unified_diff(ta, tb, f"store/{name}", f"generated/{name}", lineterm="", n=1))
            lines.extend(d[:200] for d in diff[:limit])
            if len(diff) > limit:
                lines.append(f"... {len(diff) - limit} more diff lines in {name}")
    return "\n".join(lines)


def cmd_list(args) -> int:
    from impls import registry

    from .runner import Session

    session = Session(timeout=args.timeout)
    rows = []
    try:
        for name in _backends(args.backends):
            d = session.describe(name)
            if "missing" in d:
                rows.append([name, "-", "missing", d["missing"][:60], ""])
                continue
            dtypes = "; ".join(f"{dev}: {','.join(dts)}" for dev, dts in d["dtypes"].items())
            rows.append([name, d["version"], ",".join(d["devices"]), ",".join(d["modes"]), dtypes])
    finally:
        session.close()
    _print_table(["backend", "version", "devices", "modes", "dtypes"], rows)
    del registry
    return 0


def _print_table(header, rows) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def cmd_run(args) -> int:
    from . import report
    from .runner import JournalBusy, run

    cases = _select_cases(args)
    backends = _backends(args.backends)
    out_given = args.out is not None
    out_dir = Path(args.out or "reports/latest")
    json_path = Path(args.json) if args.json else out_dir / "results.json"
    journal = json_path.with_name(json_path.stem + ".partial.jsonl")
    whole_store = not (args.k or args.dtypes or (args.cases and not args.golden))
    try:
        doc = run(backends, cases, devices=_split(args.devices), modes=_split(args.modes), jobs=args.jobs,
                  timeout=args.timeout, log_dir=out_dir / "logs", progress=_progress(), journal=journal,
                  resume=args.resume, whole_store=whole_store)
    except JournalBusy as e:
        print(f"mmconf run: {e}", file=sys.stderr)
        return 2
    report.write_results(doc, json_path)
    journal.unlink(missing_ok=True)
    wrote_report = not args.json or out_given  # --json alone writes the results only
    if wrote_report:
        report.write_report(doc, out_dir)
    summary = report.summary_lines(doc)
    print("\n".join(summary))
    if args.timings:  # a run always has them (a resumed one, for what it ran)
        header, rows, note = report.timing_table(doc)
        print()
        _print_table(header, rows)
        print(note)
    print(f"results: {json_path}" + (f"; report: {out_dir / 'conformance.md'}" if wrote_report else ""))
    return 0 if report.conforms(doc) else 1


def cmd_cache(args) -> int:
    """Where the compilation caches are and what they hold, or clear them."""
    from . import cache

    where = cache.root()
    if where is None:
        print(f"caching is off (MMCONF_CACHE_DIR={cache.OFF})")
        return 0
    if args.action == "clear":
        cache.clear()
        print(f"cleared {where}")
        return 0
    print(f"{where} (this CPU's part: {cache.host()})")
    what = {**cache.SUBDIRS, cache.ENVS: "mmconf matrix's environments, one per backend release"}
    _print_table(["part", "files", "MiB", "what"], [[name, files, f"{size / 2**20:.1f}", what[name]]
                                                   for name, files, size in cache.usage()])
    return 0


def cmd_check(args) -> int:
    """Every golden case (and --cases files) against a user's callable; exit 0 only if it conforms."""
    from collections import Counter

    from . import report
    from .record import FAILING, UNSUPPORTED, Tally
    from .runner import run

    try:
        from impls.checked import adapter_class

        adapter_class(args.framework)
    except ValueError as e:
        print(f"mmconf check: {e}", file=sys.stderr)
        return 2
    if ":" not in args.callable:
        print(f"mmconf check: expected MODULE:CALLABLE, got {args.callable!r}", file=sys.stderr)
        return 2
    spec_name = f"check:{args.framework}:{args.callable}"
    if args.fullgraph:
        os.environ["MMCONF_FULLGRAPH"] = "1"  # read by the adapter in the worker, which inherits it
    cases = _select_cases(args)
    doc = run([spec_name], cases, devices=_split(args.devices), modes=_split(args.modes), jobs=1,
              timeout=args.timeout, progress=_progress())
    if args.json:
        report.write_results(doc, Path(args.json))
    desc = doc["backends"][spec_name]
    if "missing" in desc:
        print(f"mmconf check: cannot load {args.callable} with the {args.framework} adapter: {desc['missing']}",
              file=sys.stderr)
        return 2
    records = doc["records"]
    table: dict = {}
    for r in records:
        table.setdefault((r["mode"], r["device"], r["dtype"]), []).append(r)
    rows = [[m, d, dt, t.passed, t.failing, t.unsupported]
            for (m, d, dt), t in sorted((k, Tally.of(rs)) for k, rs in table.items())]
    print(f"mmconf check {args.callable} ({args.framework} adapter): {len(cases)} cases")
    _print_table(["mode", "device", "dtype", "pass", "fail", "unsupported"], rows)
    for mode, breaks in sorted(report.captures(records).items()):
        print(f"\n{mode}: " + report.fmt_capture(breaks))
    failing = [r for r in records if r["verdict"] in FAILING]
    unsupported = sorted({f"{r['dtype']} {r['check']} ({r['mode']}, {r['device']}): {r['detail'][:80]}"
                          for r in records if r["verdict"] == UNSUPPORTED})
    if unsupported:
        print(f"\nunsupported (capability gaps, not failures): {len(unsupported)} kinds")
        for line in unsupported[:10]:
            print(f"  {line}")
    if failing:
        print(f"\nfailures ({len(failing)}):")
        for r in failing[: args.show]:
            where = f"{r['dtype']}-{r['case']} [{r['check']}, {r['mode']}]"
            print(f"  {where} {', '.join(r['clauses'])}: {r['detail'][:120]}")
        if len(failing) > args.show:
            print(f"  ... {len(failing) - args.show} more (--show N, or --json PATH for all)")
        clauses = Counter(c for r in failing for c in r["clauses"])
        print("\nclauses broken: " + ", ".join(f"{c} ({n})" for c, n in clauses.most_common()))
        print("verdict: DOES NOT CONFORM")
        return 1
    print("\nverdict: CONFORMS")
    return 0


def cmd_fuzz(args) -> int:
    """Differential fuzzing against the exact reference; exit 1 on a mismatch no deviation explains."""
    from .fuzz import fuzz
    from .runner import Session

    seed = None if args.seed == "random" else int(args.seed)
    session = Session(timeout=args.timeout)
    failed = False
    try:
        for backend in _backends(args.backends):
            def progress(stats, backend=backend):
                print(f"{backend}: {stats['examples']} examples, {stats['explained']} explained so far",
                      file=sys.stderr, flush=True)

            r = fuzz(backend, args.examples, seed, session, _split(args.devices), _split(args.modes), progress)
            if "missing" in r:
                print(f"{backend}: missing ({r['missing'][:100]})")
                continue
            line = f"{backend}: {r['examples']} examples, {r['explained']} mismatches explained by listed deviations"
            if not r["failure"]:
                print(f"{line}, no other mismatch")
                continue
            failed = True
            print(f"{line}; MISMATCH (shrunk):")
            for rec in r["failure"]["records"]:
                print(f"  {rec['mode']} {rec['device']} {rec['check']}: {rec['detail']} "
                      f"(expected {json.dumps(rec.get('expected'))[:200]}, got {json.dumps(rec.get('got'))[:200]})")
            print("  as a case-file entry (add it to cases/regressions.json, then `mmconf cases generate`):")
            print("  " + json.dumps(r["failure"]["case"]))
    finally:
        session.close()
    return 1 if failed else 0


GPU_BACKENDS = "torch,torch-fast,triton,jax"  # what a GPU box has: no TensorFlow, paddle or mindspore needed
GPU_SIZES = "32x10,4096x1000,256x32768,16384x4096,16384x32768"


def cuda_device_name() -> str | None:
    """The first CUDA device's name, asked of torch (else JAX) in a subprocess; None without one."""
    probes = ("import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')",
              "import jax; print(next((d.device_kind for d in jax.devices() if d.platform == 'gpu'), ''))")
    for code in probes:
        try:
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            continue
        name = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else ""
        if name:
            return name
    return None


def cmd_gpu(args) -> int:
    """The conformance suite and the benchmark grid on the GPU, into reports/gpu-<device name>/."""
    name = cuda_device_name()
    if name is None:
        print("mmconf gpu: no CUDA device found (neither torch nor JAX sees one)", file=sys.stderr)
        return 2
    out = Path(args.out or f"reports/gpu-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}")
    print(f"{name}: conformance, then the benchmark, into {out}/")
    common = ["--devices", "cuda", "--backends", args.backends, "--out", str(out)]
    conformance = main(["run", *common, "--timeout", str(args.timeout)])
    bench = main(["bench", *common, "--sizes", args.sizes, "--budget", str(args.budget)])
    print(f"merge with a CPU run: mmconf report reports/latest/results.json {out}/results.json "
          f"reports/latest/bench.json {out}/bench.json --out reports/merged")
    return bench if bench else conformance


def cmd_report(args) -> int:
    """Merge conformance results and bench.json files (several machines) into one report each."""
    from . import report

    docs = []
    for path in args.results:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:
            print(f"mmconf report: cannot read {path}: {e}", file=sys.stderr)
            return 2
        problem = report.problem(doc)
        if problem:
            print(f"mmconf report: {path}: not a results.json or bench.json of mmconf: {problem}", file=sys.stderr)
            return 2
        docs.append(doc)
    out_dir = Path(args.out)
    bench = [d for d in docs if report.is_bench(d)]
    results = [d for d in docs if not report.is_bench(d)]
    if bench:  # first, so that the conformance report links to it
        report.write_bench(report.merge_bench(bench), out_dir)
        print(f"merged {len(bench)} benchmark run(s) into {out_dir / 'bench.md'}")
    if results:
        doc = report.merge(results)
        report.write_results(doc, out_dir / "results.json")
        report.write_report(doc, out_dir)
        print(f"merged {len(results)} run(s) into {out_dir / 'conformance.md'}")
    return 0


def cmd_matrix(args) -> int:
    """The golden cases through several releases of one backend, each in its own environment."""
    from . import matrix

    if args.backend not in matrix.PACKAGES:
        print(f"mmconf matrix: no release list for {args.backend!r}; known: {', '.join(matrix.PACKAGES)}",
              file=sys.stderr)
        return 2
    versions = _split(args.versions) or matrix.PACKAGES[args.backend][1]
    try:
        doc = matrix.matrix(args.backend, versions, _select_cases(args), jobs=args.jobs)
    except matrix.MatrixError as e:
        print(f"mmconf matrix: {e}", file=sys.stderr)
        return 2
    for path in matrix.write(doc, Path(args.out)):
        print(f"wrote {path}")
    return 0


def cmd_findings(args) -> int:
    """The vendors' listed deviations of a run, one line per mechanism; with --upstream, an issue
    draft for each."""
    from . import report, upstream

    path = Path(args.results)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        print(f"mmconf findings: cannot read {path}: {e}", file=sys.stderr)
        return 2
    problem = report.problem(doc) or ("a bench.json, not a results.json" if report.is_bench(doc) else None)
    if problem:
        print(f"mmconf findings: {path}: {problem}", file=sys.stderr)
        return 2
    if args.upstream:
        out_dir = Path(args.out) if args.out else path.parent / "upstream"
        for p, title in upstream.write(doc, out_dir, Path(args.matrix)):
            print(f"{p}: {title}")
        print(f"index: {out_dir / 'README.md'}")
        return 0
    for (backend, label), records in upstream.groups(doc).items():
        print(f"{backend}: {label} ({records[0]['deviation']['clause']}): {len(records)} record(s)")
    return 0


def cmd_bench(args) -> int:
    """Time every backend, mode, device, dtype, size and pass, interleaved; with --compare or
    --before, gate each row: exit 1 if one is SLOWER, else 3 if one is INCONCLUSIVE."""
    import importlib.util

    from . import report
    from .bench import grid
    from .bench.run import Settings, run

    try:
        settings = _bench_settings(args, Settings, grid)
        max_slowdown = _fraction(args.max_slowdown)
    except ValueError as e:
        print(f"mmconf bench: {e}", file=sys.stderr)
        return 2
    old = None
    if args.compare:
        try:
            old = json.loads(Path(args.compare).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            print(f"mmconf bench: cannot read {args.compare}: {e}", file=sys.stderr)
            return 2
        if not report.is_bench(old):
            print(f"mmconf bench: {args.compare} is not a bench.json", file=sys.stderr)
            return 2
    needed = [m for m in ("matplotlib", "tabulate") if importlib.util.find_spec(m) is None]
    if needed:
        print(f"mmconf bench: needs {', '.join(needed)}: pip install 'mmconf[bench]'", file=sys.stderr)
        return 2
    backends = _bench_backends(args, settings)
    out_dir = Path(args.out)
    start = time.monotonic()
    doc = run(backends, settings, out_dir / "logs" / "bench", progress=_progress())
    from .bench.compare import AgainstBefore, Compare

    gates = []
    if settings.before:
        gates.append((f"against {settings.before} in this run", AgainstBefore(doc, max_slowdown)))
    if old is not None:
        gates.append((f"against {args.compare}", Compare(old, doc, max_slowdown, absolute=args.absolute)))
    report.write_bench(doc, out_dir, gates)
    _bench_summary(doc, gates)
    print(f"{len(doc['records'])} rows in {time.monotonic() - start:.0f} s; report: {out_dir / 'bench.md'}")
    return max((g.exit_status for _, g in gates), default=0, key=lambda code: (code == 1, code))


def _fraction(text: str) -> float:
    """'10%' or '0.1' -> 0.1."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"bad --max-slowdown {text!r}: expected a percentage (10%) or a fraction (0.1)") from None
    if value < 0:
        raise ValueError("--max-slowdown must not be negative")
    return value


def _bench_settings(args, Settings, grid):
    s = Settings(baseline=args.baseline, timeout=args.timeout)
    if args.quick:
        s.sizes, s.first_mode_only = list(grid.QUICK_SIZES), True
        s.budget_s, s.warmup_s, s.processes = 0.2, 0.05, 2
    if args.sizes:
        s.sizes = grid.parse_sizes(args.sizes)
    if args.dtypes:
        s.dtypes = _split(args.dtypes)
        bad = [d for d in s.dtypes if d not in DTYPES]
        if bad:
            raise ValueError(f"unknown dtype(s) {', '.join(bad)}; expected {', '.join(DTYPES)}")
    if args.passes:
        s.passes = _split(args.passes)
        if any(p not in grid.PASSES for p in s.passes):
            raise ValueError(f"--passes takes {' and '.join(grid.PASSES)}")
    s.devices, s.modes = _split(args.devices), _split(args.modes)
    for name, attr in (("threads", "threads"), ("budget", "budget_s"), ("block", "block_s"),
                       ("precision", "precision"), ("min_blocks", "min_blocks"), ("max_blocks", "max_blocks"),
                       ("processes", "processes"), ("noisy", "noisy")):
        value = getattr(args, name)
        if value is not None:
            if value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
            setattr(s, attr, value)
    if s.min_blocks < 6:
        raise ValueError("--min-blocks must be at least 6 (fewer blocks give no 95% interval)")
    s.max_blocks = max(s.max_blocks, s.min_blocks)
    if args.before:
        s.before = args.before if "/" in args.before else None
        if s.before is None:
            raise ValueError(f"--before {args.before!r}: expected BACKEND/MODE, e.g. check:torch:old_kernel:loss/eager")
    return s


def _bench_backends(args, settings) -> list[str]:
    """--backends, or every registered backend; --quick: NumPy and the baseline's backend (or another
    installed one); the --before backend joins them."""
    if args.backends or not args.quick:
        chosen = _backends(args.backends)
    else:
        from impls import load_backend, registry

        base = settings.baseline.split("/")[0]
        others = sorted((n for n in registry() if n != "numpy"), key=lambda n: n != base)
        chosen = ["numpy"] + [n for n in others if load_backend(n).installed()][:1]
    before = settings.before and settings.before.rsplit("/", 1)[0]
    return chosen + [before] if before and before not in chosen else chosen


def _bench_summary(doc: dict, gates) -> None:
    from collections import Counter

    from . import report

    ok = [r for r in doc["records"] if r["status"] == "ok"]
    flagged = ", ".join(f"{sum(1 for r in ok if r.get(k))} {k}" for k in ("noisy", "unsteady", "contended"))
    other = Counter(r["status"] for r in doc["records"] if r["status"] != "ok")
    print(f"{len(ok)} rows timed ({flagged})" + "".join(f", {n} {k}" for k, n in other.items()))
    bw = doc["environment"]["bandwidth"]
    print("measured bandwidth: " + ", ".join(f"{d} {b['gbps']:.3g} GB/s" for d, b in bw.items() if b.get("gbps"))
          + f"; CPU speed swing {100 * doc['environment'].get('cpu_swing', 0):.0f}%")
    if not doc["baseline_found"]:
        print(f"baseline {doc['baseline']} is not in this run: ratios left empty")
    for name, d in doc["backends"].items():
        if "missing" in d:
            print(f"{name}: missing ({d['missing'][:100]})")
    for title, gate in gates:
        header, rows = report.comparison_table(gate)
        print(f"\n{title} (at most {100 * gate.max_slowdown:.0f}% slower allowed):")
        _print_table(header, rows)
        counts = ", ".join(f"{n} {k}" for k, n in gate.counts().items())
        print(f"regression check: {report.GATE_WORDS[gate.exit_status]} ({counts})")


def _add_case_selection(p) -> None:
    """The options that choose the cases of `run` and `check`."""
    p.add_argument("--cases", action="append", metavar="FILE", help="a case file (repeatable); "
                   "replaces the golden cases unless --golden is given")
    p.add_argument("--golden", action="store_true", help="with --cases: run the golden cases too")
    p.add_argument("--dtypes", help="comma-separated dtypes (default: all)")
    p.add_argument("-k", help="comma-separated substrings of '<dtype>-<family>/<case>' to select")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mmconf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("cases", help="generate or verify the golden-case store, or import cases from a source")
    p.add_argument("action", choices=["generate", "verify", "import"])
    p.add_argument("source", nargs="?", help="import: where from (torch-opinfo: the installed torch's OpInfo)")
    p.add_argument("--out", help="import: the case file to write (default torch-opinfo.json)")
    p.set_defaults(fn=cmd_cases)

    p = sub.add_parser("list", help="the backends found, with versions, devices, modes and dtypes")
    p.add_argument("--backends", help="comma-separated backend names (default: all)")
    p.add_argument("--timeout", type=float, default=300.0)
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("run", help="run the golden cases (and --cases files) through the backends")
    p.add_argument("--backends", help="comma-separated backend names (default: all installed)")
    _add_case_selection(p)
    p.add_argument("--devices", help="comma-separated devices, e.g. cpu,cuda (default: all found)")
    p.add_argument("--modes", help="comma-separated modes (default: every mode of each backend)")
    p.add_argument("--json", help="where to write the results JSON (default: OUT/results.json)")
    p.add_argument("--out", help="report directory (default: reports/latest)")
    p.add_argument("--jobs", type=int, help="worker processes at once, each running a lane (a backend's mode, or "
                   "modes that share work) or helping one (default: the number of CPUs)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a case may take (default 120)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its journal "
                   "(RESULTS.partial.jsonl beside the results file) instead of starting over")
    p.add_argument("--timings", action="store_true", help="print where the run's time went, per backend, "
                   "device and mode (results.json records it always)")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("cache", help="the frameworks' compilation caches mmconf keeps (MMCONF_CACHE_DIR): "
                       "show them, or clear them")
    p.add_argument("action", nargs="?", choices=["show", "clear"], default="show")
    p.set_defaults(fn=cmd_cache)

    p = sub.add_parser("check", help="check your own kernel (MODULE:CALLABLE) against every golden case")
    p.add_argument("callable", metavar="MODULE:CALLABLE")
    p.add_argument("--framework", default="torch", help="torch, jax, tensorflow or numpy (default torch)")
    _add_case_selection(p)
    p.add_argument("--devices", help="comma-separated devices (default: all the framework finds)")
    p.add_argument("--modes", help="comma-separated modes (default: every mode of the adapter)")
    p.add_argument("--json", help="write every record to this results JSON")
    p.add_argument("--show", type=int, default=25, help="failures to list (default 25)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a case may take (default 120)")
    p.add_argument("--fullgraph", action="store_true", help="torch: compile to one graph, a graph break then "
                   "being a capability gap (default: compile as users do, and report the breaks)")
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("fuzz", help="differential fuzzing of the backends against the exact reference")
    p.add_argument("--backends", help="comma-separated backends, or check:FRAMEWORK:MODULE:CALLABLE (default: all)")
    p.add_argument("--examples", type=int, default=200, help="examples per backend (default 200)")
    p.add_argument("--seed", default="0", help="an integer for a reproducible run, or 'random' (default 0)")
    p.add_argument("--devices", help="comma-separated devices (default: all found)")
    p.add_argument("--modes", help="comma-separated modes (default: every mode of each backend)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a case may take (default 120)")
    p.set_defaults(fn=cmd_fuzz)

    p = sub.add_parser("bench", help="benchmark the backends, interleaved; tables with intervals, "
                       "plots, a statistical regression gate")
    p.add_argument("--backends", help="comma-separated backends, or check:FRAMEWORK:MODULE:CALLABLE "
                   "(default: all; --quick: numpy and the baseline's backend)")
    p.add_argument("--sizes", metavar="NxC,...", help="batch sizes and class counts (default: 32x10, 4096x1000, "
                   "256x32768, 16384x4096)")
    p.add_argument("--dtypes", help="comma-separated: float32 (default), float64, float16, bfloat16")
    p.add_argument("--passes", help="fwd, fwd+bwd or both (default)")
    p.add_argument("--devices", help="comma-separated devices (default: all found)")
    p.add_argument("--modes", help="comma-separated modes (default: every mode of each backend)")
    p.add_argument("--threads", type=int, help="threads of every framework (default: the CPUs available)")
    p.add_argument("--budget", type=float, help="measured seconds per row at most, once --min-blocks are done "
                   "(default 2)")
    p.add_argument("--block", type=float, help="seconds a block of back-to-back calls lasts (default 0.02)")
    p.add_argument("--precision", type=float, help="stop a row once the 95%% interval of its ratio reaches at "
                   "most this far from the estimate (default 0.02)")
    p.add_argument("--min-blocks", type=int, help="blocks per row at least (default 9, at least 6)")
    p.add_argument("--max-blocks", type=int, help="blocks per row at most (default 400)")
    p.add_argument("--processes", type=int, help="worker processes each row is measured in, one after another "
                   "(default 3)")
    p.add_argument("--noisy", type=float, help="flag a row noisy when its interval reaches further than this "
                   "from its estimate (default 0.1)")
    p.add_argument("--baseline", default="torch/eager", help="BACKEND/MODE the ratios refer to (default torch/eager)")
    p.add_argument("--quick", action="store_true", help="a smoke run: two sizes, short budgets, numpy and one "
                   "other backend, each backend's first mode")
    p.add_argument("--compare", metavar="BASELINE.json", help="an earlier bench.json: gate each row's ratio "
                   "against it (exit 1 SLOWER, 3 INCONCLUSIVE)")
    p.add_argument("--before", metavar="BACKEND/MODE", help="gate every other row against this one, measured "
                   "interleaved in the same run (e.g. check:torch:old_kernel:loss/eager)")
    p.add_argument("--max-slowdown", default="10%", help="with --compare or --before: allowed slowdown (default 10%%)")
    p.add_argument("--absolute", action="store_true", help="with --compare: compare rows without a ratio on "
                   "their medians")
    p.add_argument("--out", default="reports/latest", help="report directory (default: reports/latest)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one row may take (default 600)")
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("gpu", help="the conformance suite and the benchmark grid on the GPU, in one go")
    p.add_argument("--backends", default=GPU_BACKENDS, help=f"comma-separated backends (default {GPU_BACKENDS})")
    p.add_argument("--sizes", default=GPU_SIZES, help=f"benchmark sizes (default {GPU_SIZES})")
    p.add_argument("--budget", type=float, default=1.0, help="measured seconds per bench row at most (default 1)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a case may take (default 120)")
    p.add_argument("--out", help="report directory (default reports/gpu-<device name>)")
    p.set_defaults(fn=cmd_gpu)

    p = sub.add_parser("report", help="merge results or bench JSON files (several machines) into one report")
    p.add_argument("results", nargs="+")
    p.add_argument("--out", default="reports/latest")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("matrix", help="the golden cases through several releases of one backend, each in an "
                       "environment mmconf creates and keeps (MMCONF_CACHE_DIR/envs)")
    p.add_argument("backend")
    p.add_argument("--versions", help="comma-separated releases (default: those of the published matrix)")
    _add_case_selection(p)
    p.add_argument("--jobs", type=int, help="worker processes at once (default: the number of CPUs)")
    p.add_argument("--out", default="reports/matrix")
    p.set_defaults(fn=cmd_matrix)

    p = sub.add_parser("findings", help="the vendors' listed deviations of a run, one per mechanism; "
                       "--upstream writes an issue draft for each")
    p.add_argument("results", nargs="?", default="reports/latest/results.json")
    p.add_argument("--upstream", action="store_true", help="write the issue drafts (and an index)")
    p.add_argument("--out", help="where the drafts go (default: upstream/ beside the results)")
    p.add_argument("--matrix", default="reports/matrix", help="release matrices (mmconf matrix) that say "
                   "which releases fail under each draft's clause")
    p.set_defaults(fn=cmd_findings)

    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except (CaseError, DeviationError) as e:
        print(f"mmconf: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = " (continue it with `mmconf run --resume` and the same options)" if args.command == "run" else ""
        print(f"\nmmconf: interrupted{hint}", file=sys.stderr)
        return 130
