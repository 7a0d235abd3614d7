"""epx: predict gene expression from epigenomic tracks and DNA sequence.

Importing ``epx`` is cheap; the data API is loaded on first use.
"""

from epx import _moved
from epx._version import __version__

_moved.install()  # old module paths such as epx.contract stay importable

__all__ = ["__version__", "load_dataset"]


def __getattr__(name: str):
    if name == "load_dataset":
        from epx.dataset import load_dataset

        return load_dataset
    raise AttributeError(f"module 'epx' has no attribute {name!r}")
