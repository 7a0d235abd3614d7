"""The reference genome: windows of a FASTA read with pyfaidx, padded with N past chromosome ends.

pyfaidx silently truncates a slice that runs past a chromosome end, so a fixed-length window
would shrink; :meth:`Reference.fetch` pads explicitly instead. Chromosome names are canonical
(``chr1``) on the epx side whatever the FASTA uses. A FASTA whose ``.fai`` is missing and whose
directory is read-only (a shared reference) is indexed into epx's cache directory instead; a
``.fai`` older than its FASTA (the FASTA was rewritten since) is rebuilt, never read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from epx.errors import InputFileError
from epx.io.chroms import alias_map


def cache_dir() -> Path:
    """Where epx keeps derived files it may rebuild (``$XDG_CACHE_HOME/epx`` or ``~/.cache/epx``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "epx"


def _writable(directory: Path) -> bool:
    """Writable and meant to be: root may write anywhere, but a directory without write bits is
    someone's read-only data (a shared reference), where epx leaves no index behind."""
    return os.access(directory, os.W_OK) and bool(directory.stat().st_mode & 0o222)


def _index_path(path: Path) -> Path | None:
    """The ``.fai`` pyfaidx should use: beside the FASTA when present or writable, else in the cache."""
    beside = Path(str(path) + ".fai")
    # an index older than the FASTA points at the wrong bytes (the FASTA was rewritten): pyfaidx
    # rebuilds it where it may write; a read-only one is replaced by a fresh one in the cache
    if beside.exists() and beside.stat().st_mtime >= path.stat().st_mtime or _writable(path.parent):
        return None
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "fai" / f"{path.name}.{key}.fai"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputFileError(
            f"has no .fai index, its directory is read-only and epx's cache {target.parent} cannot be created"
            f" ({err.strerror}); run `samtools faidx {path}` where you can write, or set XDG_CACHE_HOME",
            path=path) from None
    return target


def _check_compression(path: Path) -> None:
    """A gzip FASTA must be bgzip (blocked, so random access works), and pyfaidx reads bgzip only
    through Biopython: say so in one line instead of pyfaidx's ImportError."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return
    plain = path.name.removesuffix(".gz").removesuffix(".bgz")
    # BGZF: FLG.FEXTRA and a "BC" subfield (SAM spec, section 4.1)
    if not (len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC"):
        raise InputFileError(f"is gzip-compressed; a compressed FASTA must be bgzip-compressed (`gunzip -c "
                             f"{path.name} > {plain} && bgzip {plain}`, or just gunzip it)", path=path)
    try:
        import Bio  # noqa: F401
    except ImportError:
        raise InputFileError(f"is bgzip-compressed, which pyfaidx reads only with Biopython: `pip install "
                             f"biopython`, or decompress it (`bgzip -d -c {path.name} > {plain}`)", path=path) from None


class Reference:
    """Random access to a (b)gzip-free or bgzipped FASTA with canonical chromosome names."""

    def __init__(self, path: str | Path):
        import pyfaidx

        self.path = Path(path)
        if not self.path.is_file():
            raise InputFileError("reference FASTA not found" if not self.path.exists()
                                 else "reference FASTA is not a regular file", path=self.path)
        _check_compression(self.path)
        try:
            index = _index_path(self.path)
            self._fasta = pyfaidx.Fasta(str(self.path), indexname=None if index is None else str(index),
                                        as_raw=True, sequence_always_upper=False, rebuild=True,
                                        read_long_names=False)
        except pyfaidx.UnsupportedCompressionFormat:
            raise InputFileError("is gzip-compressed; a compressed FASTA must be bgzip-compressed"
                                 f" (gunzip it, then `bgzip {self.path.name.removesuffix('.gz')}`)",
                                 path=self.path) from None
        except PermissionError as err:
            raise InputFileError(f"cannot write its .fai index ({err.strerror}); run `samtools faidx "
                                 f"{self.path}` where you can write", path=self.path) from None
        except (pyfaidx.FastaIndexingError, pyfaidx.FetchError, ValueError) as err:
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise InputFileError(f"not a readable FASTA ({first})", path=self.path) from None
        names = list(self._fasta.keys())
        if not names:
            raise InputFileError("FASTA holds no sequences", path=self.path)
        self._alias = alias_map(names, self.path)
        self._lengths = {canon: len(self._fasta[name]) for canon, name in self._alias.items()}

    @property
    def chroms(self) -> list[str]:
        """Canonical chromosome names, in file order."""
        return list(self._alias)

    def has(self, chrom: str) -> bool:
        from epx.io.chroms import canonical_chrom

        return canonical_chrom(chrom) in self._alias

    def length(self, chrom: str) -> int:
        from epx.io.chroms import canonical_chrom

        try:
            return self._lengths[canonical_chrom(chrom)]
        except KeyError:
            raise InputFileError(f"chromosome {chrom} is not in the FASTA (it has "
                                 f"{', '.join(self.chroms[:5])}{'...' if len(self.chroms) > 5 else ''})",
                                 path=self.path) from None

    def fetch(self, chrom: str, start: int, end: int) -> bytes:
        """Bases ``[start, end)`` (0-based) as bytes, case preserved; ``N`` outside the chromosome."""
        from epx.io.chroms import canonical_chrom

        if end < start:
            raise ValueError(f"end {end} < start {start}")
        n = self.length(chrom)
        lo, hi = max(start, 0), min(end, n)
        if hi <= lo:
            return b"N" * (end - start)
        name = self._alias[canonical_chrom(chrom)]
        body = self._fasta[name][lo:hi].encode("ascii")
        return b"N" * (lo - start) + body + b"N" * (end - hi)

    def close(self) -> None:
        self._fasta.close()

    def __enter__(self) -> Reference:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
