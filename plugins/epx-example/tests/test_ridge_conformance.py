"""The example plugin runs epx's conformance check, as any third-party plugin should."""

from epx.models.testing import check_model


def test_ridge_conforms(tmp_path):
    check_model("ridge", tmp_path)
