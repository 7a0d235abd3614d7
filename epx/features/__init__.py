"""Tracks to numbers: window statistics and bins from bigWigs (``windows``), peak features from BED
files (``peaks``), the derived feature families (``derived``) and the ``featurize`` step that
writes a dataset. Builds on :mod:`epx.io`; the pipeline steps build on this package.
"""

_OLD_NAMES = ("derive_features", "feature_catalogue", "normalise_features", "profile_entropy")


def __getattr__(name: str):
    # ``from epx.features import derive_features`` worked when this package was one module.
    if name in _OLD_NAMES:
        from epx.features import derived

        return getattr(derived, name)
    raise AttributeError(f"module 'epx.features' has no attribute {name!r}")
