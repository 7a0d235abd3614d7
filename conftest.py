"""Shared by tests/ and plugins/*/tests: keep every test's caches out of the user's home.

epx writes derived files to ``$XDG_CACHE_HOME/epx`` (FASTA indexes for read-only directories, the
prediction cache of `epx personalize` and the enformer backend); tests get a fresh one per
session.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_CACHE = tempfile.mkdtemp(prefix="epx-test-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["XDG_CACHE_HOME"] = _CACHE
os.environ.pop("EPX_ENFORMER_WEIGHTS", None)
