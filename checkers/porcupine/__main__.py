"""`python -m checkers.porcupine --build`: build (or find) the cached porcupine helper, print its path."""

from __future__ import annotations

import argparse
import sys

from . import PorcupineUnavailable, ensure_binary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checkers.porcupine",
                                     description="Build the porcupine linearizability helper into the cache.")
    parser.add_argument("--build", action="store_true", help="build the helper if needed and print its path")
    args = parser.parse_args(argv)
    if not args.build:
        parser.print_help()
        return 0
    try:
        print(ensure_binary())
    except PorcupineUnavailable as e:
        print(f"porcupine helper unavailable: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
