"""Bin geometries: ``WIDTHxCOUNT`` specs such as ``100x100`` or Chromoformer's
``2000x20,500x80,100x400``, parsed without numpy (the CLI parses them before any heavy import).

A geometry is ``n_bins`` bins of ``bin_size`` bp centred on the TSS (TSS in bin ``n_bins // 2``),
strand-oriented; its name, ``f"{bin_size}x{n_bins}"``, keys its arrays in a dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from epx.errors import EpxError

_SPEC = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


@dataclass(frozen=True)
class BinSpec:
    """``n_bins`` bins of ``bin_size`` bp around the TSS (default 100 x 100 bp = TSS +/- 5 kb)."""

    n_bins: int = 100
    bin_size: int = 100

    @property
    def name(self) -> str:
        return f"{self.bin_size}x{self.n_bins}"

    @property
    def window(self) -> int:
        """Width of the whole window in bp."""
        return self.n_bins * self.bin_size

    def frame_bins(self, max_region_width: int) -> int:
        """Bins of a distal-region frame at this bin width: the widest region allowed, rounded up."""
        return -(-int(max_region_width) // self.bin_size)


def parse_bins(text: str, option: str = "--bins") -> tuple[BinSpec, ...]:
    """``"2000x20,500x80"`` -> BinSpecs (width x count, in the order given); one line on a bad spec."""
    items = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    if not items:
        raise EpxError(f"{option} needs at least one geometry WIDTHxCOUNT, e.g. 100x100")
    out: list[BinSpec] = []
    for item in items:
        m = _SPEC.match(item)
        if not m:
            raise EpxError(f"{option}: cannot read {item!r}; give bin geometries as WIDTHxCOUNT (bp x bins), "
                           "e.g. 100x100 or 2000x20,500x80,100x400")
        width, count = int(m.group(1)), int(m.group(2))
        if width < 1 or count < 1:
            raise EpxError(f"{option}: {item!r} needs a bin width and a bin count of at least 1")
        spec = BinSpec(n_bins=count, bin_size=width)
        if spec in out:
            raise EpxError(f"{option}: geometry {spec.name} is given twice")
        out.append(spec)
    return tuple(out)


def parse_geometry_names(text: str, option: str = "--bins") -> tuple[str, ...]:
    """Canonical geometry names (``100X100`` -> ``100x100``) of a comma-separated list."""
    return tuple(spec.name for spec in parse_bins(text, option))
