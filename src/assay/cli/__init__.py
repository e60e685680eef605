"""The ``assay`` command: a thin layer over the public API.

Each sub-command calls one public function; :func:`main` takes ``argv`` and returns the exit
status, so it is testable without a subprocess. User errors print one clear line (no
traceback) and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from assay import __version__, errors

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assay",
        description="Assay: an open platform for auditing AI systems.",
    )
    parser.add_argument("--version", action="version", version=f"assay {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run the demonstration audit on the embedded platform",
        description="Run a small end-to-end run on the embedded platform: register a data "
        "set, a module, a model, an inference service and a method, label and document them, "
        "and query them back. A second run reuses what exists.",
    )
    demo.add_argument(
        "--data",
        default=os.environ.get("ASSAY_DEMO_DATA", "assay-data"),
        help="directory of the platform's state (env: ASSAY_DEMO_DATA; default: assay-data)",
    )
    demo.add_argument(
        "--account",
        default=os.environ.get("ASSAY_ACCOUNT", "demo"),
        help="account that owns the demo's entities (env: ASSAY_ACCOUNT; default: demo)",
    )
    from assay.cli.serve import add_serve_parser
    from assay.cli.tokens import add_token_parser

    add_serve_parser(sub)
    add_token_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``assay`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from assay.cli.demo import run_demo

            run_demo(args.data, account=args.account)
            return 0
        if args.command == "serve":
            from assay.cli.serve import run_serve

            return run_serve(args)
        if args.command == "token":
            from assay.cli.tokens import run_token

            return run_token(args)
        parser.print_help()
        return 0
    except errors.AssayError as exc:
        print(f"assay: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("assay: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
