"""mmconf: a conformance suite and benchmark harness for the multi-class margin loss.

The harness imports no framework: every backend runs in a worker process of its own.
"""

__version__ = "0.1.0"
