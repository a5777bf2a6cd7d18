"""python -m hvae_lite.exercises generate [--check]: build (or verify) the student notebooks."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .notebooks import SOLUTIONS_DIR, STUDENT_DIR, generate, stale_notebooks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hvae_lite.exercises", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write student notebooks from the solution notebooks")
    gen.add_argument("--solutions", type=Path, default=SOLUTIONS_DIR, help="folder of solution notebooks")
    gen.add_argument("--student", type=Path, default=STUDENT_DIR, help="folder for the student notebooks")
    gen.add_argument("--check", action="store_true", help="write nothing; exit 1 if any student notebook is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_notebooks(args.solutions, args.student)
        for name in stale:
            print(f"out of date: {args.student / name}  (run: python -m hvae_lite.exercises generate)")
        return 1 if stale else 0
    for path in generate(args.solutions, args.student):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
