#!/usr/bin/env python
"""A folder of links to the training photos whose source repository's licence is permissive.

    python scripts/permissive_train_set.py [TRAIN_DIR] [OUT_DIR]

TRAIN_DIR (default ../shared/data/train_faces) lists each photo's source and licence in
SOURCES.tsv; OUT_DIR (default runs/train_permissive) gets a symbolic link to each photo under
MIT, Apache-2.0, BSD or Boost (the licences scripts/build_identities.py accepts) and the matching
rows of SOURCES.tsv, so `imnkit train OUT_DIR ...` reads only those. The photos are not copied.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from pathlib import Path

PERMISSIVE = ("MIT", "Apache", "BSD", "Boost")


def permissive_rows(train: Path) -> list[dict[str, str]]:
    with open(train / "SOURCES.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [r for r in rows if r["licence_of_repo"].startswith(PERMISSIVE)]


def main() -> None:
    train = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/train_faces").resolve()
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "runs/train_permissive")
    rows = permissive_rows(train)
    out.mkdir(parents=True, exist_ok=True)
    for r in rows:
        link = out / r["file"]
        if not link.is_symlink():
            link.symlink_to(train / r["file"])
    with open(out / "SOURCES.tsv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    counts = Counter(r["licence_of_repo"].split(" (")[0] for r in rows)
    print(f"{len(rows)} photos linked in {out}: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))


if __name__ == "__main__":
    main()
