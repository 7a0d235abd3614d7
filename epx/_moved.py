"""Old module paths (``epx.contract``, ``epx.plugins``, ``epx.genes``, ...) kept importable.

epx was one flat package until 0.x; plugins and scripts written then import ``epx.contract`` or
``epx.plugins``. A meta-path finder maps each old name to the module's new home, so both names
give the *same* module object (monkeypatching and ``isinstance`` checks keep working), without a
shim file per module in the package.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys

MOVED = {
    "epx.contract": "epx.models.contract",
    "epx.plugins": "epx.models.plugins",
    "epx.testing": "epx.models.testing",
    "epx.genes": "epx.io.genes",
    "epx.labels": "epx.io.labels",
    "epx.manifest": "epx.io.manifest",
    "epx.chroms": "epx.io.chroms",
    "epx.bigwig": "epx.io.bigwig",
    "epx.inputs": "epx.io.inputs",
    "epx.windows": "epx.features.windows",
    "epx.peaks": "epx.features.peaks",
    "epx.featurize": "epx.featurize",
}


class _MovedFinder:
    """A meta-path finder and loader by protocol (find_spec, create_module, exec_module); not
    derived from ``importlib.abc``, whose import pulls in importlib.resources, tempfile and shutil
    (~7 ms of every ``epx`` start, shell completion included)."""

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__  # restored below: the import system overwrites __spec__
        return module

    def exec_module(self, module) -> None:  # type: ignore[no-untyped-def]
        real_spec = module.__spec__.loader_state
        module.__spec__ = real_spec


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
