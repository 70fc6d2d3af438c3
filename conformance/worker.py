"""Backend worker processes: the child's loop and the parent's handle on it.

Every backend runs in a process of its own (`python -m conformance.worker BACKEND`): frameworks
whose native libraries clash never meet, and a backend that segfaults, aborts or hangs takes down
only its worker. Requests and replies are JSON lines on the child's stdin and a private copy of
its stdout (stray prints of the frameworks go to stderr, which the parent logs). Arrays travel as
base64 of their raw bytes, so every bit, NaN payloads included, arrives as sent. No pickle.
"""

from __future__ import annotations

import atexit
import base64
import dataclasses
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

# --- arrays on the wire ---------------------------------------------------------------------------


def pack(a) -> dict:
    a = np.asarray(a)  # (not ascontiguousarray: it turns 0-d arrays into 1-d ones)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


def unpack(d: dict) -> np.ndarray:
    from impls.base import numpy_dtype

    raw = base64.b64decode(d["data"])
    return np.frombuffer(raw, dtype=numpy_dtype(d["dtype"])).reshape(d["shape"]).copy()


# --- the child ------------------------------------------------------------------------------------


def make_backend(spec: str):
    """A backend from its registry name, or from 'check:FRAMEWORK:MODULE:CALLABLE' for mmconf check."""
    if spec.startswith("check:"):
        from impls.checked import checked_backend

        _, framework, target = spec.split(":", 2)
        return checked_backend(framework, target)
    from impls import load_backend

    return load_backend(spec)


def call_from_request(req: dict):
    from impls.base import Call

    arrays = {k: unpack(v) for k, v in req["arrays"].items()}
    return Call(x=arrays["x"], target=arrays["target"], p=req["p"], margin=req["margin"],
                weight=arrays.get("weight"), reduction=req["reduction"], legacy=req.get("legacy"),
                cotangent=arrays.get("cotangent"), noncontiguous=tuple(req.get("noncontiguous", ())))


def _exception(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": str(exc).strip()[:2000]}


def _handle(backend, req: dict) -> dict:
    op = req.get("op")
    if op == "describe":
        return backend.describe()
    if op == "fd":
        return _finite_differences(backend, req)
    if op != "run":
        return {"protocol_error": f"unknown op {op!r}"}
    call = call_from_request(req)
    before = {k: v.tobytes() for k, v in call.arrays().items()}
    # a call of a configuration this worker has not run before pays for tracing and compiling
    # where the framework does either: --timings reports those calls apart
    signature = (req["device"], req["mode"], req["grad"], call.trace_key())
    first = signature not in _seen
    _seen.add(signature)
    start = time.perf_counter()
    try:
        out = backend.run(call, req["device"], req["mode"], req["grad"])
        reply = {"value": pack(_as_array(out.value, "value"))}
        if req["grad"]:
            reply["grad"] = pack(_as_array(out.grad, "gradient"))
        if out.capture is not None:
            reply["capture"] = out.capture
    except Exception as exc:  # the backend's exception is data (MML-10), never the worker's death
        reply = {"raised": _exception(exc),
                 "unsupported": backend.unsupported(exc, call, req["device"], req["mode"])}
    reply["seconds"] = {"first_call" if first else "call": time.perf_counter() - start}
    mutated = [k for k, v in call.arrays().items() if v.tobytes() != before[k]]
    if mutated:
        reply["mutated"] = mutated  # MML-1.7
    return reply


_seen: set = set()


def _finite_differences(backend, req: dict) -> dict:
    """Central differences of <cotangent, loss(x)> along every input element with a nonzero step."""
    call = call_from_request(req)
    steps = unpack(req["steps"])
    start = time.perf_counter()
    cot = call.cotangent.astype(np.float64)
    x64 = call.x.astype(np.float64)
    out = np.full(x64.shape, np.nan)
    # a traced mode's value comes from the function the gradient check compiled: asking for the
    # value alone would compile another for every case
    grad = req["mode"] in backend.traced_modes
    try:
        for idx in zip(*np.nonzero(steps)):
            sides = []
            for sign in (1.0, -1.0):
                x = x64.copy()
                x[idx] += sign * steps[idx]
                value = backend.run(dataclasses.replace(call, x=x.astype(call.x.dtype)), req["device"],
                                    req["mode"], grad).value
                sides.append(float(np.sum(cot * np.asarray(value, dtype=np.float64))))
            out[idx] = (sides[0] - sides[1]) / (2 * steps[idx])
    except Exception as exc:
        return {"raised": _exception(exc), "unsupported": None}
    return {"fd": pack(out), "seconds": {"fd": time.perf_counter() - start}}


class BadOutput(TypeError):
    """The implementation returned something that is not an array."""


def _as_array(v, what: str) -> np.ndarray:
    if not isinstance(v, np.ndarray):
        raise BadOutput(f"the {what} is {type(v).__name__}, not an array")
    if v.dtype.kind not in "biufc" and v.dtype.name != "bfloat16":  # objects, strings, records: not numbers
        raise BadOutput(f"the {what} is an array of {v.dtype}, not of numbers")
    return v


# A worker whose resident memory passes this many MiB after a request retires (its reply says so
# and the parent starts a fresh one): tracing frameworks keep per-trace state that no API frees
# (tf.custom_gradient registers every trace's gradient function globally), so a long run would
# otherwise grow without bound.
MAX_RSS_MIB = int(os.environ.get("MMCONF_WORKER_MAX_RSS_MIB", "4096"))


def resident_mib() -> float | None:
    """This process's resident memory in MiB (None where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _physical_mib() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    except (ValueError, OSError):
        return 1 << 20


# A hard limit, unlike MAX_RSS_MIB: a worker whose resident memory passes it while a call runs is
# stopped (MEMORY_EXIT), so that a runaway kernel costs its own record, not the machine. Polled, not
# an rlimit: RLIMIT_AS counts address space, which JAX, TensorFlow and CUDA reserve by the terabyte.
MEMORY_LIMIT_MIB = int(os.environ.get("MMCONF_WORKER_MEMORY_MIB") or _physical_mib() // 2)
MEMORY_EXIT = 86


def _watch_memory(limit: float, every_s: float = 0.05) -> None:
    """Poll this process's resident memory; past `limit` MiB, say so on stderr and exit."""
    import threading

    def watch():
        while True:
            rss = resident_mib()
            if rss is not None and rss > limit:
                os.write(2, f"\nmmconf worker: {rss:.0f} MiB resident, past the limit of {limit:.0f} MiB "
                            "(MMCONF_WORKER_MEMORY_MIB)\n".encode())
                os._exit(MEMORY_EXIT)
            time.sleep(every_s)

    threading.Thread(target=watch, name="mmconf-memory-limit", daemon=True).start()


def serve(spec: str, handle=None, max_rss: float | None = MAX_RSS_MIB,
          memory_limit: float | None = MEMORY_LIMIT_MIB) -> None:
    """The child's loop: load the backend, then answer requests with `handle(backend, request)`
    (the conformance requests by default; the benchmark passes its own) until stdin closes."""
    handle = handle or _handle
    if memory_limit:
        _watch_memory(memory_limit)
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # whatever the frameworks print goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    try:
        backend = make_backend(spec)
        backend.load()
        ready = {"ready": True}
    except BaseException as exc:  # a missing or broken framework is reported, not a crash
        ready = {"missing": f"{type(exc).__name__}: {exc}".strip()}
        backend = None
    proto.write(json.dumps(ready) + "\n")
    for line in sys.stdin:
        if backend is None:
            break
        start = time.perf_counter()
        req = json.loads(line)
        try:
            reply = handle(backend, req)
        except Exception as exc:
            reply = {"protocol_error": "".join(traceback.format_exception(exc))[-2000:]}
        reply["worker_s"] = time.perf_counter() - start  # the rest of a round trip is the pipe's
        rss = resident_mib()
        if max_rss is not None and rss is not None and rss > max_rss:
            reply["retire"] = f"{rss:.0f} MiB resident, above {max_rss} MiB"
        proto.write(json.dumps(reply) + "\n")
        if "retire" in reply:
            break
    # Every reply is written and every cache entry was written when it was made: run the exit
    # handlers (TensorFlow's delete its temporary files) but skip the rest of the interpreter's
    # teardown, which takes torch and TensorFlow about a second the parent waits for.
    atexit._run_exitfuncs()
    proto.flush()
    sys.stderr.flush()
    os._exit(0)


# --- the parent -----------------------------------------------------------------------------------


class WorkerDied(RuntimeError):
    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail  # kind: 'crash' or 'timeout'


class Worker:
    """A handle on one backend's worker process; restarted after a crash, a timeout or its
    retirement (see MAX_RSS_MIB)."""

    def __init__(self, spec: str, timeout: float = 120.0, start_timeout: float = 300.0,
                 log_dir: Path | None = None, module: str = "conformance.worker", env: dict | None = None,
                 python: str | None = None):
        self.spec, self.timeout, self.start_timeout = spec, timeout, start_timeout
        self.module, self.env = module, env  # the child's module (`python -m`) and its environment
        self.python = python or sys.executable  # another environment's interpreter (mmconf matrix)
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="mmconf-logs-"))
        self.proc: subprocess.Popen | None = None
        self.missing: str | None = None
        self._chunks: list[bytes] = []  # what was read after the last complete reply
        self.restarts = self.retirements = 0
        self.start_seconds = 0.0  # spent starting the process and loading the framework, all starts

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"worker-{self.spec.replace(':', '_').replace('/', '_')}.log"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # never through a link planted in a shared directory
        log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o666), "ab")
        env = dict(self.env or os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [self.python, "-m", self.module, self.spec],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True,
        )
        log.close()
        self._chunks = []
        started = time.perf_counter()
        try:
            hello = self._read(self.start_timeout)
        finally:
            self.start_seconds += time.perf_counter() - started
        self.missing = hello.get("missing")

    def request(self, req: dict, timeout: float | None = None) -> dict:
        if not self.missing and (self.proc is None or self.proc.poll() is not None):
            if self.proc is not None:
                self.restarts += 1
            self.start()
        if self.missing:
            return {"missing": self.missing}
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the read below reports how the process died
        reply = self._read(self.timeout if timeout is None else timeout)
        if reply.pop("retire", None):
            self.retirements += 1
            self.close()  # it has exited after this reply; the next request starts a fresh one
        return reply

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            # a newline can only be in the newest chunk: looking there alone keeps a reply of many
            # megabytes linear to read
            while not self._chunks or b"\n" not in self._chunks[-1]:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.kill()
                    raise WorkerDied("timeout", f"no answer within {timeout:g} s; worker killed")
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    raise WorkerDied("crash", self._death())
                self._chunks.append(chunk)
        finally:
            sel.close()
        line, rest = b"".join(self._chunks).split(b"\n", 1)
        self._chunks = [rest] if rest else []
        try:
            reply = json.loads(line)
            if not isinstance(reply, dict):
                raise ValueError(f"a JSON {type(reply).__name__}")
        except ValueError as e:  # something in the worker (a kernel) wrote into the protocol
            self.kill()
            raise WorkerDied("crash", f"the worker wrote something other than a reply ({e}: "
                                      f"{line[:80]!r}); worker killed") from None
        return reply

    def _death(self) -> str:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        if code is not None and code < 0:
            try:
                how = f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        elif code == MEMORY_EXIT:
            how = "stopped: its resident memory passed the limit (MMCONF_WORKER_MEMORY_MIB)"
        else:
            how = f"exited with status {code}"
        tail = ""
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
            tail = " | ".join(tail)
        except OSError:
            pass
        return f"worker {how}" + (f"; stderr: {tail[-500:]}" if tail else "")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self._kill_group()
            self.proc.wait()

    def _kill_group(self) -> None:
        """SIGKILL the worker's process group (its own session): the worker, and whatever
        processes a kernel started and left behind."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        if self.proc:
            self._kill_group()  # the worker is gone; children it left would outlive the run
        self.proc = None


if __name__ == "__main__":
    serve(sys.argv[1])
