"""The plugin surface: the contract a model backend implements, plugin discovery, conformance checks.

A plugin needs only ``from epx.models import ModelSpec, FoldData`` (both import-light) and, in its
tests, ``from epx.models.testing import check_model``.
"""

from epx.models.contract import INPUT_KINDS, TASKS, FoldData, Model
from epx.models.plugins import ModelSpec

__all__ = ["INPUT_KINDS", "TASKS", "FoldData", "Model", "ModelSpec"]
