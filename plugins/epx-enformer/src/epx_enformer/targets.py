"""Enformer track names: basenji ``targets_human.txt`` files and track selection by index or name.

The file is tab-separated with a header; the first column is the track index (its header cell is
empty in basenji's files, or ``index``), and the ``identifier`` and ``description`` columns name
the track (``ENCFF833POA``, ``CAGE:liver, adult``). Real Enformer's human head has 5,313 tracks in
the order of https://raw.githubusercontent.com/calico/basenji/master/manuscripts/cross2020/targets_human.txt
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from epx.errors import EpxError, InputFileError

TARGETS_URL = "https://raw.githubusercontent.com/calico/basenji/master/manuscripts/cross2020/targets_human.txt"
TARGETS_NAMES = ("targets.txt", "targets_human.txt")


@dataclass(frozen=True)
class Target:
    index: int
    identifier: str
    description: str


def find_targets(weights: Path) -> Path | None:
    """``targets.txt`` or ``targets_human.txt`` in the weights directory (or beside the checkpoint file)."""
    directory = weights if weights.is_dir() else weights.parent
    for name in TARGETS_NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


def read_targets(path: str | Path) -> list[Target]:
    """The tracks of a targets file, in index order (indices must be 0..n-1)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputFileError(f"cannot read targets file ({exc.strerror or exc})", path=path) from None
    if not lines:
        raise InputFileError("targets file is empty", path=path)
    header = lines[0].split("\t")
    if "description" not in header:
        raise InputFileError("targets file has no 'description' column (expected basenji's targets_human.txt "
                             f"format: index, identifier, file, clip, scale, sum_stat, description; {TARGETS_URL})",
                             path=path, line=1)
    desc_col = header.index("description")
    id_col = header.index("identifier") if "identifier" in header else None
    out = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise InputFileError(f"{len(cells)} columns where the header has {len(header)}", path=path, line=number)
        try:
            index = int(cells[0])
        except ValueError:
            raise InputFileError(f"track index {cells[0]!r} is not an integer", path=path, line=number) from None
        if index != len(out):
            raise InputFileError(f"track index {index} out of order (expected {len(out)})", path=path, line=number)
        out.append(Target(index, cells[id_col] if id_col is not None else "", cells[desc_col]))
    return out


def default_tracks(targets: list[Target] | None, n_tracks: int) -> list[int]:
    """The CAGE tracks (descriptions starting ``CAGE:``) when the targets name any, else all tracks."""
    if targets:
        cage = [t.index for t in targets if t.description.upper().startswith("CAGE:")]
        if cage:
            return cage
    return list(range(n_tracks))


def parse_track_list(value: object) -> list[str | int] | None:
    """Tracks as options give them: None/""/"default" (the default set), "all", a list, or one string
    of items separated by ``;`` (names contain commas) or, when every item is an integer, by commas."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        items = [v for v in value if not (isinstance(v, str) and not v.strip())]
        return items or None
    if isinstance(value, int):
        return [value]
    text = str(value).strip()
    if text in ("", "default"):
        return None
    if text == "all":
        return ["all"]
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if len(parts) == 1 and "," in text and all(p.strip().isdigit() for p in text.split(",")):
        parts = [p.strip() for p in text.split(",")]
    return parts


def select_tracks(tracks: list[str | int] | None, targets: list[Target] | None, n_tracks: int,
                  targets_path: Path | None = None) -> list[int]:
    """Track indices for ``tracks`` (indices, names or ``all``; None = :func:`default_tracks`).
    Names match a description or identifier exactly, then case-insensitively."""
    if tracks is None:
        return default_tracks(targets, n_tracks)
    out: list[int] = []
    for item in tracks:
        text = str(item).strip()
        if text == "all":
            out.extend(range(n_tracks))
            continue
        if isinstance(item, int) or text.lstrip("-").isdigit():
            index = int(text)
            if not 0 <= index < n_tracks:
                raise EpxError(f"track index {index} is out of range: the model has {n_tracks} tracks (0-{n_tracks - 1})")
            out.append(index)
            continue
        if not targets:
            raise EpxError(f"track {text!r} is a name, but no targets file names the tracks; put targets.txt beside "
                           f"the weights or pass --targets FILE (real Enformer: {TARGETS_URL}), or give track indices")
        out.append(_match(text, targets, targets_path))
    if len(set(out)) != len(out):
        dup = sorted({i for i in out if out.count(i) > 1})
        raise EpxError(f"track(s) {', '.join(map(str, dup))} selected more than once")
    return out


def _match(name: str, targets: list[Target], path: Path | None) -> int:
    for key in (lambda s: s, str.casefold):
        hits = [t.index for t in targets if key(t.description) == key(name) or (t.identifier and key(t.identifier) == key(name))]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise EpxError(f"track name {name!r} matches {len(hits)} tracks ({', '.join(map(str, hits[:10]))}); "
                           "pass the index of the one you mean")
    names = [t.description for t in targets]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if not close:
        lowered = name.casefold()
        close = [d for d in names if lowered in d.casefold()][:5]
    where = f" in {path}" if path else ""
    hint = f"; close matches: {' | '.join(close)}" if close else ""
    raise EpxError(f"no track named {name!r}{where}{hint}")


def output_names(indices: list[int], targets: list[Target] | None) -> list[str]:
    """The description of each selected track (``track {i}`` without targets), made unique by
    appending `` [i]`` where descriptions repeat."""
    if not targets:
        return [f"track {i}" for i in indices]
    names = [targets[i].description or f"track {i}" for i in indices]
    return [f"{n} [{i}]" if names.count(n) > 1 else n for n, i in zip(names, indices, strict=True)]
