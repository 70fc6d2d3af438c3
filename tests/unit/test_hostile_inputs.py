"""Files and kernels written by others get a clear answer, never a traceback: case files, deviation
files, results files, misbehaving kernels, and two runs into one place."""

import json
import os
import subprocess
import sys
import time

import pytest

from conformance import report, runner
from conformance.caseio import MAX_ELEMENTS, CaseError, load_cases, load_file
from conformance.deviations import DeviationError, Deviations
from conformance.files import write_atomic

CASE = {"id": "mine/one", "dtype": "float32", "x": [[0.5, 1.5, -1.0]], "target": [1]}


def mmconf(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "conformance", *args], capture_output=True, text=True, env=env,
                          cwd=cwd)


def case_file(tmp_path, *cases, name="cases.json", raw=None):
    path = tmp_path / name
    path.write_text(raw if raw is not None else json.dumps({"cases": list(cases)}))
    return path


def no_traceback(r):
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-2000:]


# --- case files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("x", [[10**400, 1.0, 2.0]], "field 'x': a number out of range"),
    ("target", [2**70], "field 'target': a number out of range"),
    ("x_shape", [0, 10**12], "field 'x_shape'"),
    ("x_shape", [0, 100_000_000], f"beyond the {MAX_ELEMENTS} elements"),
])
def test_numbers_and_shapes_out_of_range_are_refused(tmp_path, field, value, message):
    case = {**CASE, field: value, **({"x": []} if field == "x_shape" else {})}
    with pytest.raises(CaseError, match=message):
        load_file(case_file(tmp_path, case))


def test_deep_nesting_is_refused(tmp_path):
    deep = "[" * 900 + "1" + "]" * 900
    with pytest.raises(CaseError, match="a case must be"):
        load_file(case_file(tmp_path, raw='{"cases": [' + deep + "]}"))
    for field, value in (("x", "HERE"), ("target", "HERE"), ("expect", {"value": "HERE"})):
        raw = json.dumps({"cases": [{**CASE, field: value}]}).replace('"HERE"', deep)
        with pytest.raises(CaseError, match=f"field '{field}': lists nested too deeply"):
            load_file(case_file(tmp_path, raw=raw))
    with pytest.raises(CaseError, match="nested too deeply"):
        load_file(case_file(tmp_path, raw='{"cases": ' + "[" * 100_000 + "]" * 100_000 + "}"))
    r = mmconf("run", "--backends", "numpy", "--cases", str(case_file(tmp_path, raw=raw)), "--out", str(tmp_path))
    assert r.returncode == 2 and "nested too deeply" in r.stderr
    no_traceback(r)


def test_an_id_given_twice_is_refused(tmp_path):
    a, b = case_file(tmp_path, CASE, name="a.json"), case_file(tmp_path, CASE, name="b.json")
    with pytest.raises(CaseError, match="already given by .*a.json"):
        load_cases([a, b], golden=False)
    golden = case_file(tmp_path, {**CASE, "id": "basic/2x3-p1-none"}, name="c.json")
    with pytest.raises(CaseError, match="already given by the golden cases"):
        load_cases([golden], golden=True)
    assert len(load_cases([a], golden=False)) == 1


# --- reports ------------------------------------------------------------------------------------------


def test_an_id_cannot_break_out_of_its_code_span_or_make_a_link():
    evil = "x`y\n# heading [click me](javascript:alert(1))"
    md = report.to_markdown([("p", f"e.g. {report._code(evil)}")])
    assert "\n#" not in md and md.count("``") == 2
    page = report.to_html([("p", f"e.g. {report._code(evil)} and [it](javascript:alert(1)) [ok](bench.html)")])
    assert 'href="javascript' not in page and '<a href="bench.html">ok</a>' in page


def test_a_failing_error_check_of_a_case_without_clauses_is_reported(tmp_path):
    case = {"id": "mine/bad-p", "dtype": "float32", "x": [[0.5, 1.5]], "target": [1], "p": 3}
    path = case_file(tmp_path, case)
    r = mmconf("check", "tests.kernels.hostile:never_raises", "--framework", "numpy", "--cases", str(path),
               "--json", str(tmp_path / "r.json"))
    no_traceback(r)
    records = json.loads((tmp_path / "r.json").read_text())["records"]
    assert [(x["check"], x["verdict"], x["clauses"]) for x in records] == [("error", "fail", [])]
    r = mmconf("report", str(tmp_path / "r.json"), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "mine/bad-p" in (tmp_path / "out" / "conformance.md").read_text()


@pytest.mark.parametrize("doc", [[1, 2], {"records": [{"id": "x"}]}, {"records": "no"}, {"kind": "mmconf-bench"}])
def test_report_refuses_a_malformed_results_file(tmp_path, doc):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    r = mmconf("report", str(path), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and str(path) in r.stderr and not (tmp_path / "out").exists()
    no_traceback(r)


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "f.md", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.md").stat().st_mode & 0o777 == 0o600


# --- deviation files ----------------------------------------------------------------------------------

ENTRY = 'where = "numpy-*"\nclause = "MML-7.1"\nreason = "r"\n'


@pytest.mark.parametrize("text, message", [
    ("[[deviation]]\nid = \n", r"line 2"),
    ("[[deviation]]\n" + ENTRY + 'whn = ["z_nan"]\n', "unknown key.*whn"),
    ("[[deviation]]\n" + ENTRY + 'check = "valu"\n', "'check' must be"),
    ("[[deviation]]\n" + ENTRY + "strict = 1\n", "'strict'"),
    ("[[deviation]]\n" + ENTRY.replace('"r"', "3"), "'reason'"),
])
def test_a_broken_deviation_file_is_refused_naming_file_and_place(tmp_path, text, message):
    (tmp_path / "numpy.toml").write_text(text)
    with pytest.raises(DeviationError, match=message) as e:
        Deviations.load(tmp_path)
    assert "numpy.toml" in str(e.value)


def test_a_broken_deviation_file_stops_a_run_before_it_starts(tmp_path, monkeypatch):
    (tmp_path / "numpy.toml").write_text("[[deviation\n")
    monkeypatch.setattr("conformance.deviations.DEVIATIONS_DIR", tmp_path)
    monkeypatch.setattr(runner.Session, "run_case", lambda *a: pytest.fail("a case ran"))
    with pytest.raises(DeviationError, match="numpy.toml"):
        runner.run(["numpy"], [])


# --- kernels --------------------------------------------------------------------------------------------


def check(tmp_path, kernel, *extra, env=None):
    out = tmp_path / "r.json"
    r = mmconf("check", f"tests.kernels.hostile:{kernel}", "--framework", "numpy", "--json", str(out),
               "-k", "float32-basic/2x3-p1", *extra, env=env)
    no_traceback(r)
    return r, json.loads(out.read_text())["records"]


@pytest.mark.parametrize("kernel", ["returns_strings", "returns_objects"])
def test_an_array_of_non_numbers_is_a_failing_verdict(tmp_path, kernel):
    r, records = check(tmp_path, kernel)
    assert r.returncode == 1 and records and all(x["verdict"] in ("fail", "crash") for x in records
                                                   if x["check"] == "value")


def test_a_kernel_writing_into_the_protocol_is_a_crash_and_the_run_goes_on(tmp_path):
    r, records = check(tmp_path, "writes_into_the_protocol")
    assert r.returncode == 1 and records
    assert any(x["verdict"] == "crash" and "other than a reply" in x["detail"] for x in records)


def test_processes_a_kernel_starts_do_not_outlive_the_run(tmp_path):
    pid_file = tmp_path / "child.pid"
    check(tmp_path, "leaves_a_child", env={**os.environ, "MMCONF_TEST_CHILD_PID": str(pid_file)})
    pid = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"the kernel's child {pid} outlived the run")


def test_worker_logs_go_to_a_private_directory_that_the_session_removes(tmp_path):
    from conformance.caseio import load_golden

    case = load_golden()[0]
    session = runner.Session()
    first = session.log_dir
    assert first.stat().st_mode & 0o777 == 0o700 and first.name.startswith("mmconf-logs-")
    session.run_case("numpy", "cpu", "eager", case)
    assert any(first.rglob("worker-*.log"))
    session.close()
    assert not first.exists()  # nothing of a run left in the shared temporary directory
    session.run_case("numpy", "cpu", "eager", case)  # used again: a new private directory
    assert session.log_dir != first and session.log_dir.stat().st_mode & 0o777 == 0o700
    session.close()
    assert not session.log_dir.exists()
    given = runner.Session(log_dir=tmp_path / "logs")  # where the user asked for them: kept
    given.run_case("numpy", "cpu", "eager", case)
    given.close()
    assert any((tmp_path / "logs").rglob("worker-*.log"))


# --- runs -------------------------------------------------------------------------------------------------


def test_a_second_run_into_the_same_journal_is_refused(tmp_path):
    journal = tmp_path / "results.partial.jsonl"
    first = runner._open_journal(journal)
    try:
        with pytest.raises(runner.JournalBusy, match="another mmconf run"):
            runner._open_journal(journal)
    finally:
        first.close()


def test_resume_with_another_selection_and_twice_after_a_torn_line(tmp_path):
    from conformance.caseio import load_golden

    cases = [c for c in load_golden() if c.family == "kinks"]
    journal = tmp_path / "results.partial.jsonl"
    full = runner.run(["numpy"], cases, journal=journal)
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # torn
    fewer = cases[: len(cases) // 2]
    part = runner.run(["numpy"], fewer, journal=journal, resume=True)  # another selection: no KeyError
    assert {r["case"] for r in part["records"]} == {c.id for c in fewer}
    again = runner.run(["numpy"], cases, journal=journal, resume=True)  # a second resume loses nothing
    assert again["records"] == full["records"]


def test_a_kernel_that_crashes_on_every_call_is_not_restarted_for_every_request(tmp_path):
    out = tmp_path / "r.json"
    r = mmconf("check", "tests.kernels.hostile:segfault_always", "--framework", "numpy", "--json", str(out),
               "-k", "float32-")
    no_traceback(r)
    records = json.loads(out.read_text())["records"]
    assert r.returncode == 1 and {x["verdict"] for x in records if x["check"] != "error"} == {"crash"}
    skipped = [x for x in records if x["detail"].startswith("not run")]
    sent = len(records) - len(skipped)
    assert skipped and sent < runner.CRASH_LIMIT + len(records) / runner.PROBE + 10, sent


def test_an_entry_that_explains_everything_is_counted_and_shown_in_the_summary():
    def failing(case, clause, when):
        return {"id": f"numpy-cpu-eager-float32-{case}", "case": case, "family": case.split("/")[0],
                "backend": "numpy", "device": "cpu", "mode": "eager", "dtype": "float32", "check": "value",
                "verdict": "fail", "clauses": [clause],
                "deviation": {"label": f"numpy-* {when}", "where": "numpy-*", "clause": "MML-7.1", "reason": "r",
                              "when": when}}

    records = [failing("basic/a", "MML-2.1", []), failing("special/b", "MML-7.3", [])]
    summary = report.summary_lines({"records": records, "backends": {}})
    assert any("broad deviation entry in numpy.toml: numpy-* []" in line and "2 failing record(s)" in line
               for line in summary), summary
    assert report.deviation_entries(records)["numpy", "numpy-* []", "MML-7.1"] == (2, {"MML-2.1", "MML-7.3"}, True)
    narrow = [failing("basic/a", "MML-2.1", ["z_nan"])]
    assert not any("broad" in line for line in report.summary_lines({"records": narrow, "backends": {}}))


def test_a_kernel_past_the_memory_limit_is_stopped_and_the_run_goes_on(tmp_path):
    r, records = check(tmp_path, "hogs_memory", env={**os.environ, "MMCONF_WORKER_MEMORY_MIB": "700"})
    assert r.returncode == 1 and records
    assert all(x["verdict"] == "crash" and "memory" in x["detail"] for x in records if x["check"] != "error")


def test_a_reply_of_80_mb_is_read_whole_and_within_a_short_timeout(tmp_path):
    from conformance.worker import Worker

    w = Worker("any", timeout=20, log_dir=tmp_path, module="tests.kernels.big_reply")
    try:
        assert len(w.request({"op": "run"})["data"]) == 80 << 20  # a quadratic read took minutes
    finally:
        w.close()
