"""Write the large files of the bad-input corpus (tests/data/bad_input/expected.json).

    python tests/data/make_bad_input.py OUT_DIR

Small bad files are committed in ``tests/data/bad_input/``; these are too big to
commit and are generated at test time. Each ``@NAME`` in the manifest is a file
this script writes as ``OUT_DIR/NAME``.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path


def enormous_line_fields(path: Path) -> None:
    """Two good rows, then one line of 300,000 comma-separated fields (about 1 MB)."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("user,item\nu1,a\n")
        out.write(",".join(["v"] * 300_000))
        out.write("\nu2,b\n")


def enormous_line_fields_gzip(path: Path) -> None:
    """The same shape gzip-compressed: line 3 has 20,000 fields, scanned while decompressing."""
    wide = ",".join(["v"] * 20_000)
    path.write_bytes(gzip.compress(f"user,item\nu1,a\n{wide}\nu2,b\n".encode(), mtime=0))


def enormous_line_field(path: Path) -> None:
    """One row whose item field is 5 MB long: past DuckDB's 2 MB line limit."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("user,item\nu1,a\nu2,")
        out.write("x" * 5_000_000)
        out.write("\nu3,b\n")


GENERATORS = {
    "enormous_line_fields.csv": enormous_line_fields,
    "enormous_line_fields.csv.gz": enormous_line_fields_gzip,
    "enormous_line_field.csv": enormous_line_field,
}


def make_all(folder: Path) -> dict[str, Path]:
    """Write every generated file into ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, make in GENERATORS.items():
        make(folder / name)
        made[name] = folder / name
    return made


if __name__ == "__main__":
    for name, path in make_all(Path(sys.argv[1])).items():
        print(name, path.stat().st_size)
