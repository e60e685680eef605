"""``assay verify ID``: re-hash the chain from a result back to its data
(:func:`assay.provenance.verify`), on a server (``Client.verify``) or, with ``--data``, on an
embedded platform (``LocalPlatform.verify``).

Prints one line per link checked — ``ok`` or ``MISMATCH``, naming the entity, the artifact and
the digests recorded and found — and exits 0 when every link holds, 1 when one does not
(``--json`` prints the result as JSON instead).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_verify_parser", "run_verify"]


def add_verify_parser(sub: Any) -> None:
    """Add ``verify`` to the ``assay`` command's sub-commands."""
    from assay.cli.entities import connection_options

    parser = sub.add_parser(
        "verify",
        parents=[connection_options()],
        help="re-check a result's digests back to its data",
        description="Re-hash the chain from an entity (a SafetyCase, a Measurement, an "
        "Evaluation, a Dataset) back to its data: every file against the digest recorded when "
        "it was written, every input's digest, every Module's files. Exit status 0 when every "
        "link holds, 1 when one does not.",
        epilog="e.g. assay verify 3f2a...c9 --data ./assay-data",
    )
    parser.add_argument("id", metavar="ID", help="the entity's id")
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="an embedded platform's directory (LocalPlatform) instead of a server",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(verify_parser=parser)


def run_verify(args: argparse.Namespace) -> int:
    """Run ``assay verify``; the exit status."""
    if args.data:
        from assay.cli.entities import require_platform_directory
        from assay.local import LocalPlatform

        require_platform_directory(args.data)
        with LocalPlatform(args.data) as platform:
            result = platform.verify(args.id)
    else:
        from assay.client import Client

        with Client(args.endpoint, args.token) as client:
            result = client.verify(args.id)
    print(json.dumps(result.to_dict(), indent=1) if args.json else result)
    return 0 if result.ok else 1
