"""A stand-in worker (`python -m tests.kernels.big_reply SPEC`) whose every reply is 80 MB of JSON:
the harness must read large results in linear time."""

import json
import sys

if __name__ == "__main__":
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for _request in sys.stdin:
        out.write(json.dumps({"data": "x" * (80 << 20)}) + "\n")
        out.flush()
