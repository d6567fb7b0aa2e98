"""Sum pytest's JUnit XML reports into one table and a closing count line (used by .ci/run).

Usage: python3 scripts/junit_counts.py REPORT.xml [REPORT.xml ...]
Prints one row per report (the file's stem) and, last, ``total: N passed, N failed, N skipped``; exits 1 when a
report is missing or unreadable (its suite did not finish).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(report: Path) -> dict[str, int]:
    """passed/failed/skipped of one report (errors count as failed)."""
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = total["failures"] + total["errors"]
    return {"passed": total["tests"] - failed - total["skipped"], "failed": failed, "skipped": total["skipped"]}


def main(paths: list[str]) -> int:
    total = {"passed": 0, "failed": 0, "skipped": 0}
    ok = True
    for path in map(Path, paths):
        try:
            row = counts(path)
        except (OSError, ET.ParseError) as e:
            print(f"{path.stem}: no report ({e.__class__.__name__}): the suite did not finish")
            ok = False
            continue
        print(f"{path.stem}: {row['passed']} passed, {row['failed']} failed, {row['skipped']} skipped")
        total = {k: total[k] + row[k] for k in total}
    print(f"total: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    return 0 if ok and total["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
