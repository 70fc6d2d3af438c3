import os

from conformance import cache

pytest_plugins = ["conformance.pytest_plugin"]

# Every test compiles into mmconf's caches, as the conformance lanes' workers do, so that the
# lanes' entries serve the unit tests' workers too. Without this, the first torch.compile in this
# process sets TORCHINDUCTOR_CACHE_DIR to Inductor's default, and each runner session started here
# afterwards hands that on to its workers, which then compile everything again.
os.environ.update(cache.worker_env())  # a cache variable already set is kept
