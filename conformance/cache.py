"""mmconf's cache directory: the frameworks' own persistent compilation caches, and the lanes'
durations of the last run (which the runner starts longest first).

Where: $MMCONF_CACHE_DIR, else $XDG_CACHE_HOME/mmconf, else ~/.cache/mmconf. MMCONF_CACHE_DIR=off
turns caching off. A cached executable is the framework's own compiled code for the same
computation, so a warm run tests what a cold one does. A cache is trusted code (a process that
loads it runs it): the directory is made private to its owner.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from pathlib import Path

from .files import write_atomic

OFF = "off"

# what each framework is told, under the cache root's directory for this CPU; the frameworks key
# their entries by their own version, the computation, and the compiler's flags
# (TensorFlow's XLA cache, --tf_xla_persistent_cache_directory, is not used: its keys hold each
# trace's function name, so about half of a run's entries missed in the next run, and every run
# added some 150 MB)
SUBDIRS = {"jax": "JAX's compiled executables",
           "inductor": "Inductor's FX graphs and generated code", "triton": "Triton's compiled kernels",
           "onnx": "the onnxruntime backend's exported models"}
LANES_FILE = "lanes.json"


def root() -> Path | None:
    """The cache directory, or None when caching is off."""
    given = os.environ.get("MMCONF_CACHE_DIR")
    if given == OFF:
        return None
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mmconf"


def host() -> str:
    """This CPU's model and instruction set, hashed: code compiled for one CPU may not run on another
    (XLA:CPU targets the host's features), and a home directory can be shared between machines."""
    try:
        info = [line for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith(("model name", "flags"))][:2]
    except OSError:
        info = [platform.processor(), platform.machine()]
    return "cpu-" + hashlib.sha256("\n".join(info).encode()).hexdigest()[:12]


def worker_env(environ: dict | None = None) -> dict:
    """The environment of a conformance worker: `environ` (default os.environ) with the
    frameworks' caches pointed into ours. A setting the user made is kept."""
    env = dict(os.environ if environ is None else environ)
    where = root()
    if where is None:
        return env
    where = where / host()
    _private_dir(where)
    wanted = {
        "JAX_COMPILATION_CACHE_DIR": where / "jax",
        # every compile is cached, however small or quick: ours are many and small
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
        "TORCHINDUCTOR_CACHE_DIR": where / "inductor",
        "TRITON_CACHE_DIR": where / "triton",
        "MMCONF_ONNX_CACHE": where / "onnx",
    }
    for k, v in wanted.items():
        env.setdefault(k, str(v))
    return env


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def lane_seconds() -> dict[str, float]:
    """'backend/device/mode' -> seconds its lane took in the last run that ran it."""
    where = root()
    try:
        data = json.loads((where / LANES_FILE).read_text()) if where else {}
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def save_lane_seconds(seconds: dict[str, float]) -> None:
    where = root()
    if not where or not seconds:
        return
    known = {**lane_seconds(), **seconds}
    try:
        _private_dir(where)
        write_atomic(where / LANES_FILE, json.dumps(known, indent=1, sort_keys=True))
    except OSError:
        pass  # an unwritable cache costs the next run its ordering, nothing else


ENVS = "envs"  # mmconf matrix's virtual environments, one per backend release (not per CPU)


def usage() -> list[tuple[str, int, int]]:
    """(part, files, bytes) for each part of the cache, over every CPU's directory, and the
    matrix's environments."""
    where = root()
    out = []
    for name in [*SUBDIRS, ENVS]:
        dirs = [where / ENVS] if name == ENVS else list(where.glob(f"cpu-*/{name}"))
        files = [p for d in dirs if d.is_dir() for p in d.rglob("*") if p.is_file() and not p.is_symlink()]
        out.append((name, len(files), sum(p.stat().st_size for p in files)))
    return out


def clear() -> None:
    """Remove everything mmconf keeps in its cache directory (and nothing else there)."""
    where = root()
    if where is None:
        return
    for d in [*where.glob("cpu-*"), where / ENVS]:
        if d.is_dir():
            shutil.rmtree(d)
    (where / LANES_FILE).unlink(missing_ok=True)
