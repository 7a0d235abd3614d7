"""Regenerate the static completion scripts from the installed `epx`:

    python completions/generate.py          # rewrite epx.bash, _epx, epx.fish
    python completions/generate.py --check  # exit 1 if any is stale (used by the tests)

Each script is what ``_EPX_COMPLETE=source_<shell> epx`` prints. The scripts call back into
``epx`` for every completion, so they only go stale when the CLI's name or typer changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = {"bash": "epx.bash", "zsh": "_epx", "fish": "epx.fish"}


def render(shell: str) -> str:
    env = {**os.environ, "_EPX_COMPLETE": f"source_{shell}"}
    out = subprocess.run(
        [sys.executable, "-c", "from epx.cli import app; app(prog_name='epx')"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    # zsh requires `#compdef` on the first line.
    return out.lstrip("\n").rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for shell, name in FILES.items():
        text = render(shell)
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale completion scripts: {', '.join(stale)}; run python completions/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
