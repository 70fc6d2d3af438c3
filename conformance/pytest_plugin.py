"""The conformance suite under pytest: one test per record, e.g.
`test_value[torch-cpu-eager-float32-basic/2x3-p1-none]`.

Markers: one per backend (`-m torch`) and one per check (`-m grad`); `-k` selects on the id.
Each lane (a backend's mode, or modes that share work; conformance.runner.Lane) runs in its own
worker process, as `mmconf run` does, with mmconf's compilation caches. Under pytest-xdist's
`--dist loadgroup`, each lane's tests go to one xdist worker, the longest lanes first
(`pytest_xdist_make_scheduler` below), so that a framework is loaded and a case run once; each
other test module's tests go to one worker too. Expected deviations are strict xfails; entries
that match no collected test are reported as stale at the end.

Options: --mmconf-backends a,b (default: all registered), --mmconf-cases FILE (repeatable: more
cases beside the golden ones), --mmconf-timeout SECONDS (per case, default 120).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

CHECKS = ("value", "grad", "fd", "error")


def pytest_addoption(parser):
    group = parser.getgroup("mmconf", "mmconf conformance suite")
    group.addoption("--mmconf-backends", help="comma-separated backends to test (default: all)")
    group.addoption("--mmconf-cases", action="append", default=[], help="an extra case file (repeatable)")
    group.addoption("--mmconf-timeout", type=float, default=120.0, help="seconds a case may take")


def _backend_names(config) -> list[str]:
    from impls import registry

    chosen = config.getoption("--mmconf-backends")
    return [b.strip() for b in chosen.split(",")] if chosen else list(registry())


def _describe_all(config) -> dict:
    """Every backend's self-description, each from its own worker process, in parallel."""
    from .runner import Session

    session = Session(timeout=config.getoption("--mmconf-timeout"))
    try:
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            names = _backend_names(config)
            return dict(zip(names, pool.map(session.describe, names)))
    finally:
        session.close()


def pytest_configure(config):
    from impls import registry

    from .deviations import DeviationError, Deviations

    try:
        Deviations.load()  # a broken deviation file: a usage error now, not a traceback mid-collection
    except DeviationError as e:
        raise pytest.UsageError(f"mmconf: {e}") from None

    for name in registry():
        config.addinivalue_line("markers", f"{name}: conformance records of the {name} backend")
    for check in CHECKS:
        config.addinivalue_line("markers", f"{check}: conformance records of the {check} check")
    config.addinivalue_line("markers", "check: conformance records of kernels given as --mmconf-backends check:...")
    # the workers' environment as the session found it: a test that runs torch.compile in this
    # process sets TORCHINDUCTOR_CACHE_DIR here, which the workers would take for the user's choice
    config._mmconf_env = dict(os.environ)
    if hasattr(config, "workerinput"):  # an xdist worker: the controller described the backends
        config._mmconf_descriptions = json.loads(config.workerinput["mmconf_descriptions"])
    else:
        config._mmconf_descriptions = None  # described lazily, on first use


def pytest_configure_node(node):
    """xdist hook: hand the controller's backend descriptions to each worker."""
    node.workerinput["mmconf_descriptions"] = json.dumps(_descriptions(node.config))
    node.config._mmconf_jobs = node.workerinput["workercount"]


def _jobs(config) -> int:
    """How many xdist workers share the lanes (which shards them as `mmconf run --jobs` does)."""
    return getattr(config, "_mmconf_jobs", None) or int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist hook: `--dist loadgroup` that keeps each lane's tests on one worker, the lanes in the
    order collected (the longest first), and each other test module's tests on one worker, so
    that its module-scoped fixtures run once. xdist groups by a suffix it writes into each test's
    node id, which pytest 9.2's structured ids no longer take (pytest-dev/pytest-xdist#1386):
    every worker then started every lane and ran its cases, a case once for each of its checks,
    and `xdist_group` marks group nothing. A lane is known here from the test's own id."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LaneScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _lane_of(config, nodeid) or nodeid.partition("::")[0]

    config.option.loadscopereorder = False  # xdist would put the lanes with most tests first
    return LaneScheduling(config, log)


def _lane_of(config, nodeid: str) -> str | None:
    """The lane of a conformance test, from its id (`...::test_value[<record id>]`)."""
    if not hasattr(config, "_mmconf_lanes"):
        config._mmconf_lanes = {(check, rid): lane for *_, check, rid, lane in _records(config)}
    function, _, param = nodeid.rpartition("::")[2].partition("[")
    return config._mmconf_lanes.get((function.removeprefix("test_"), param.removesuffix("]")))


def _descriptions(config) -> dict:
    if config._mmconf_descriptions is None:
        config._mmconf_descriptions = _describe_all(config)
    return config._mmconf_descriptions


def _cases(config) -> dict:
    if not hasattr(config, "_mmconf_cases"):
        from .caseio import CaseError, load_cases

        try:
            cases = load_cases(config.getoption("--mmconf-cases"), golden=True)
        except CaseError as e:
            raise pytest.UsageError(f"mmconf: {e}") from None
        config._mmconf_cases = {c.key: c for c in cases}
    return config._mmconf_cases


def _records(config):
    """(backend, device, mode, case key, check, record id, lane name) for every record of the
    matrix, in the order `mmconf run` runs them: the runner's lanes, longest first, each lane's
    work in its order."""
    from .runner import checks_of, longest_first, record_id

    cases = list(_cases(config).values())
    descriptions = _descriptions(config)
    for lane in longest_first(descriptions, jobs=_jobs(config)):
        desc = descriptions[lane.backend]
        for device, mode, case in lane.work(desc, cases):
            for check in checks_of(case, desc["ours"]):
                rid = record_id(lane.backend, device, mode, case)
                yield lane.backend, device, mode, case.key, check, rid, lane.name


def _marker(backend: str):
    """The backend's marker; kernels under `check:` share one."""
    return getattr(pytest.mark, "check" if backend.startswith("check:") else backend)


def pytest_generate_tests(metafunc):
    if "mmconf_record" not in metafunc.fixturenames:
        return
    from .deviations import Deviations

    config = metafunc.config
    check = metafunc.function.__name__.removeprefix("test_")
    deviations = Deviations.load()
    params = []
    for backend, desc in _descriptions(config).items():
        if "missing" in desc:
            params.append(pytest.param(None, id=f"{backend}-missing", marks=[
                _marker(backend), pytest.mark.skip(reason=f"{backend}: {desc['missing']}")]))
    features: dict = {}
    # in the runner's order: the scheduler hands out lanes in the order they first appear
    for backend, device, mode, key, chk, rid, lane in _records(config):
        if chk != check:
            continue
        marks = [_marker(backend), getattr(pytest.mark, check)]
        case = _cases(config)[key]
        if key not in features:
            features[key] = case.features()
        entry = deviations.match({"backend": backend, "device": device, "mode": mode, "dtype": case.dtype,
                                  "check": check}, features[key])
        if entry:
            marks.append(pytest.mark.xfail(strict=entry.strict, reason=f"{entry.clause}: {entry.reason}"))
        params.append(pytest.param((backend, device, mode, key, lane), id=rid, marks=marks))
    metafunc.parametrize("mmconf_record", params)


class _SuiteSession:
    """One runner session per pytest process; each case runs once for all of its checks."""

    def __init__(self, config):
        from .runner import Session

        self.config = config
        self.session = Session(timeout=config.getoption("--mmconf-timeout"), env=config._mmconf_env)
        self.session._descriptions.update(_descriptions(config))
        self.results: dict = {}

    def record(self, key, check: str) -> dict:
        if key not in self.results:
            backend, device, mode, case_key, lane = key
            case = _cases(self.config)[case_key]
            self.results[key] = {r["check"]: r for r in self.session.run_case(backend, device, mode, case, lane)}
        return self.results[key][check]


@pytest.fixture(scope="session")
def mmconf_session(request):
    s = _SuiteSession(request.config)
    yield s
    s.session.close()


def judge(record: dict) -> None:
    """Turn a record into a test outcome: pass, skip (unsupported) or fail with the details."""
    from .record import PASS, UNSUPPORTED

    verdict = record["verdict"]
    if verdict == PASS:
        return
    if verdict == UNSUPPORTED:
        pytest.skip(f"unsupported: {record['detail'][:200]}")
    lines = [f"{verdict}: {record.get('detail', '')}", f"clauses: {', '.join(record['clauses'])}"]
    for k in ("expected", "got", "at", "bound", "max_abs_err", "max_ulp", "raised"):
        if k in record:
            lines.append(f"{k}: {json.dumps(record[k])[:500]}")
    pytest.fail("\n".join(lines), pytrace=False)


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, "workerinput") or config._mmconf_descriptions is None:
        return
    from .deviations import Deviations

    cases = _cases(config)
    records = [{"backend": b, "device": dev, "mode": mode, "id": rid, "check": chk, "case": cases[key].id,
                "dtype": cases[key].dtype} for b, dev, mode, key, chk, rid, _ in _records(config)]
    stale = Deviations.load().stale(records, {(c.id, c.dtype): c for c in cases.values()})
    if stale:
        terminalreporter.section("mmconf: stale expected-deviation entries")
        for e in stale:
            terminalreporter.line(f"{e.backend}.toml: {e.id} ({', '.join(e.check) or 'any check'}, {e.clause}) "
                                  "matches no record")
