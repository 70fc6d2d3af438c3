"""`mmconf bench`: the benchmark harness.

In the harness process: `run` (the workers, the interleaved rounds of each cell, the records and
their roofline), `machine` (cache size, measured bandwidths, CPU accounts, a calibration kernel),
`measurement` (a row's blocks, the ratio of two rows), `stats` (intervals and the gate's rule),
`compare` (ratios, the regression gate) and `plots`. In each backend's worker process: `worker`
(the requests), `timer` (how a block of calls is timed) and `threads`. No module here imports a
framework; the adapters do, inside the workers.
"""
