"""`mmconf bench`: the benchmark harness.

In the harness process: `run` (a pytest-benchmark session per backend, records, roofline),
`machine` (cache size, measured bandwidth), `compare` (ratios to the baseline, the regression
gate) and `plots`. In each backend's session: `session` (the pytest module), `timer` (how a call
is timed) and `threads`. `measurement` reads what pytest-benchmark recorded. No module here
imports a framework; the adapters do, inside the sessions.
"""
