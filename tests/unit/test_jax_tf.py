"""Our JAX and TensorFlow implementations beyond the golden cases: the importable functions' errors,
what they do with gradients they do not implement, repros that run, and `mmconf check` with the
JAX adapter. Each framework runs in a subprocess of its own (TensorFlow must not meet PaddlePaddle
or MindSpore in one process)."""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed")


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})


def check(target, framework, *extra):
    return subprocess.run([sys.executable, "-m", "conformance", "check", target, "--framework", framework, *extra],
                          capture_output=True, text=True, cwd=ROOT)


@needs_jax
def test_jax_function_errors_and_gradients():
    r = python("""
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        import numpy as np
        from impls.jax_backend import multi_margin_loss as mml

        x, t = jnp.array([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]), jnp.array([2, 0])
        for call, kind, words in [
            (lambda: mml(x, t, p=3), ValueError, "p must be 1 or 2"),
            (lambda: mml(x, t, reduction="avg"), ValueError, "reduction"),
            (lambda: mml(x, jnp.array([0, 3])), IndexError, "target values must lie in [0, 3), got 3"),
            (lambda: mml(x, jnp.array([-1, 0])), IndexError, "got -1"),
            (lambda: mml(x, jnp.array([0.0, 1.0])), TypeError, "target must hold integer"),
            (lambda: jax.jit(lambda x: mml(x, jnp.array([0, 1, 2])))(x), ValueError, "target shape"),
            (lambda: jax.grad(lambda w: mml(x, t, weight=w))(jnp.ones(3)), NotImplementedError, "weight"),
        ]:
            try:
                call()
                raise SystemExit(f"no {kind.__name__} for {words!r}")
            except kind as e:
                assert words in str(e), str(e)
        # traced: the out-of-range sample is NaN, the others are not
        out = jax.jit(lambda x, t: mml(x, t, reduction="none"))(x, jnp.array([2, 7]))
        assert not np.isnan(out[0]) and np.isnan(out[1]), out
        # float32 computes in float32 with x64 on; a weight as a closed-over constant is fine
        assert mml(x.astype(jnp.float32), t).dtype == jnp.float32
        assert jax.grad(lambda x: mml(x, t, weight=jnp.array([1.0, 2.0, 0.5])))(x).shape == x.shape
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@needs_jax
def test_jax_without_x64_still_computes():
    r = python("""
        import jax.numpy as jnp
        from impls.jax_backend import multi_margin_loss as mml
        x = jnp.array([[1.0, 2.0, 3.0]], jnp.float32)
        print(float(mml(x, jnp.array([0]), margin=1.0)))
    """)
    assert r.returncode == 0 and abs(float(r.stdout) - 5 / 3) < 1e-6, r.stdout + r.stderr


@needs_jax
def test_jax_prepare_compiles_once():
    r = python("""
        import numpy as np
        from impls.base import Call
        from impls.jax_backend import JaxBackend
        b = JaxBackend()
        b.load()
        x = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)
        call = Call(x=x, target=np.arange(64) % 10, p=1, margin=1.0, weight=None, reduction="mean",
                    cotangent=np.ones((), np.float32))
        step = b.prepare(call, "cpu", "jit", grad=True)
        step(); step()
        (fn,) = b._compiled.values()
        assert fn._cache_size() == 1, fn._cache_size()
        # many margins (static arguments) do not pile up compiled code: the jitted functions are
        # dropped and freed, while eager calls keep nothing of ours (JAX caches eager ops itself)
        import dataclasses, gc, weakref, impls.jax_backend as jb
        dropped = weakref.ref(fn)
        del fn, step
        b.run(call, "cpu", "eager", grad=True)
        assert len(b._compiled) == 1, b._compiled.keys()  # nothing for eager, so nothing evicted by it
        jb.KEEP_COMPILED = 4  # the rule, not the figure: four compiles, not 64
        for i in range(jb.KEEP_COMPILED):  # the last one finds KEEP_COMPILED kept
            b.run(dataclasses.replace(call, margin=1.0 + i), "cpu", "jit", grad=False)
            b.run(dataclasses.replace(call, margin=1.0 + i), "cpu", "eager", grad=True)
        gc.collect()
        assert len(b._compiled) == 1 and dropped() is None, (len(b._compiled), dropped())
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@needs_jax
def test_jax_eager_compiles_the_exact_path_as_one_function():
    """An eager call that needs the exact path compiles it once for the shape (the value's and the
    gradient's), not each of its hundreds of operations."""
    r = python("""
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        import numpy as np
        from jax import monitoring
        from impls import _jax_loss

        compiles = []
        monitoring.register_event_duration_secs_listener(
            lambda event, secs, **kw: event == "/jax/core/compile/backend_compile_duration" and compiles.append(1))

        def value_and_grad(x, t):
            value, vjp = jax.vjp(lambda x: _jax_loss.multi_margin_loss(x, t, p=2, margin=0.0, reduction="sum"), x)
            return value, vjp(jnp.ones_like(value))[0]

        t = np.arange(3) % 4
        ordinary = np.linspace(-3, 2, 12, dtype=np.float32).reshape(3, 4)
        value_and_grad(ordinary, t)  # the fast path's operations, compiled for this shape
        before = len(compiles)
        value_and_grad(ordinary * np.float32(1e-30), t)  # the same shape, tiny: the exact path is what is new
        assert len(compiles) - before == 2, len(compiles) - before
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


GUARD_CODE = textwrap.dedent("""
    import numpy as np
    for dt in (np.float32, np.float64):
        tiny = np.finfo(dt).tiny
        v = np.array([0, -0.0, tiny / 3, -tiny / 3, 2.0**-21, 2.0**-20, -1, np.inf, np.nan], dt)
        want = [True, True, False, False, False, True, True, True, True]
        for name, fn in FUNCTIONS.items():
            got = np.asarray(fn(v)).tolist()
            assert got == want, (name, dt, got)
    print("ok")
""")


@needs_jax
def test_jax_subnormal_guard_in_every_mode():
    """The guard that sends tiny values to the exact path tells a subnormal from zero when XLA
    compiles it fused with float operations (which flush subnormals on a CPU)."""
    r = python(textwrap.dedent("""
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from impls._jax_loss import _at_least
        FUNCTIONS = {"eager": lambda v: _at_least(v, 2.0**-20),
                     "jit, fused": jax.jit(lambda v: _at_least(v, 2.0**-20) | (jnp.abs(v) > 5.0))}
    """) + GUARD_CODE)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@needs_tf
def test_tensorflow_subnormal_guard_in_every_mode():
    r = python(textwrap.dedent("""
        import tensorflow as tf
        from impls._tf_loss import _at_least
        fused = lambda v: _at_least(v, 2.0**-20) | (tf.abs(v) > 5.0)
        FUNCTIONS = {"eager": lambda v: _at_least(tf.constant(v), 2.0**-20),
                     "function": tf.function(fused), "xla": tf.function(fused, jit_compile=True)}
    """) + GUARD_CODE)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@needs_tf
def test_tensorflow_xla_compiles_the_function_modes_trace():
    """After the function mode, xla traces the loss no more: it compiles that trace, to the bits of
    an xla trace of its own."""
    r = python("""
        import numpy as np
        from impls.base import Call
        from impls.tf_backend import TensorFlowBackend
        b = TensorFlowBackend()
        b.load()
        traced, loss = [], b.fn
        b.fn = lambda *a, **k: traced.append(1) or loss(*a, **k)  # runs once a trace
        x = np.random.default_rng(0).standard_normal((4, 5))
        call = Call(x=x, target=np.array([0, 4, 2, 1]), p=2, margin=0.5, weight=np.linspace(0.5, 2, 5),
                    reduction="none", cotangent=np.ones(4))
        b.run(call, "cpu", "function", grad=True)
        shared = b.run(call, "cpu", "xla", grad=True)
        assert len(traced) == 1, traced
        alone = TensorFlowBackend()
        alone.load()
        own = alone.run(call, "cpu", "xla", grad=True)
        assert shared.value.tobytes() == own.value.tobytes() and shared.grad.tobytes() == own.grad.tobytes()
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@needs_tf
def test_tensorflow_traces_the_exact_path_once_for_all_shapes():
    """Traces of the loss for new shapes call the exact path's one trace (per p, reduction, ranks
    and dtypes) instead of building its thousands of ops again, with eager's bits."""
    r = python("""
        import numpy as np
        import tensorflow as tf
        from impls import _tf_loss

        def value_and_grad(x, t):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = _tf_loss.multi_margin_loss(x, t, p=2, margin=0.0, reduction="sum")
            return value, tape.gradient(value, x)

        traced = tf.function(value_and_grad)
        for n, c in ((2, 3), (5, 4), (3, 7)):
            x = tf.constant(np.linspace(-3e-30, 2e-30, n * c, dtype=np.float32).reshape(n, c))  # tiny: the exact path
            t = tf.constant(np.arange(n) % c)
            for eager, graph in zip(value_and_grad(x, t), traced(x, t)):
                assert eager.numpy().tobytes() == graph.numpy().tobytes(), (n, c, eager, graph)
        functions = _tf_loss._exact_function.cache_info().currsize
        assert functions == 2, functions  # the value's and the gradient's
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@needs_tf
def test_tensorflow_function_errors_and_gradients():
    r = python("""
        import numpy as np
        import tensorflow as tf
        from impls.tf_backend import multi_margin_loss as mml

        x, t = tf.constant([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]), tf.constant([2, 0])
        for call, kind, words in [
            (lambda: mml(x, t, p=0), ValueError, "p must be 1 or 2"),
            (lambda: mml(x, tf.constant([0, 3])), IndexError, "target values must lie in [0, 3), got 3"),
            (lambda: mml(x, tf.constant([0.0, 1.0])), TypeError, "target must hold integer"),
            (lambda: tf.function(lambda x: mml(x, tf.constant([[0, 1]])))(x), ValueError, "target shape"),
        ]:
            try:
                call()
                raise SystemExit(f"no {kind.__name__} for {words!r}")
            except kind as e:
                assert words in str(e), str(e)
        for jit in (False, True):
            out = tf.function(lambda x, t: mml(x, t, reduction="none"), jit_compile=jit)(x, tf.constant([2, -1]))
            assert not np.isnan(out[0]) and np.isnan(out[1]), out
        w = tf.Variable([1.0, 2.0, 0.5])
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            loss = mml(x, t, weight=w)
        assert tape.gradient(loss, w) is None and tape.gradient(loss, x).shape == x.shape
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@pytest.mark.parametrize("backend, mode", [
    pytest.param("jax", "jit", marks=needs_jax),
    pytest.param("tensorflow", "xla", marks=needs_tf),
    pytest.param("tensorflow", "eager", marks=needs_tf),
])
def test_repros_run(backend, mode):
    """Repros pasted into a fresh interpreter print the value and the gradient."""
    from conformance.caseio import load_golden
    from conformance.runner import call_for
    from impls import load_backend
    from impls.base import literals

    adapter = load_backend(backend)
    cases = {(c.id, c.dtype): c for c in load_golden()}
    examples = [(("special/nan-other-p1", "float16"), "nan"), (("subnormal/subnormal-inputs", "bfloat16"), "e-")]
    for key, shows in examples:
        source = adapter.repro(literals(call_for(cases[key], grad=True)), "cpu", mode, "grad")
        r = python(source)
        assert r.returncode == 0, source + "\n" + r.stderr
        assert shows in r.stdout and len(r.stdout.strip().splitlines()) >= 3, r.stdout


@needs_jax
def test_check_a_jax_kernel():
    r = check("tests.kernels.jax_kernels:correct", "jax", "--dtypes", "float32", "-k", "basic/,options/")
    assert r.returncode == 0 and "verdict: CONFORMS" in r.stdout, r.stdout + r.stderr
    r = check("tests.kernels.jax_kernels:weight_inside", "jax", "--dtypes", "float32", "-k", "errata/",
              "--modes", "jit", "--show", "50")
    assert r.returncode == 1 and "DOES NOT CONFORM" in r.stdout and "errata/p2-weight2" in r.stdout, r.stdout
