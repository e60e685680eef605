"""The ``assay`` command: a thin layer over the public API.

Each sub-command calls one public function; :func:`main` takes ``argv`` and returns the exit
status, so it is testable without a subprocess. User errors print one clear line (no
traceback; ``--debug`` shows it) and exit with status 2.

Commands: ``demo`` (``demo.py``), ``serve`` (``serve.py``), ``token`` (``tokens.py``), and the
everyday commands over a server's entities, ``<kind> list|get|delete|wait|download|logs`` and
``scores list`` (``entities.py``), and ``pipelines list|get|versions|deploy|undeploy|logs|
export|counters`` over a server's serving pipelines (``pipelines.py``), and ``secrets
set|list|delete`` over an account's runner credentials (``secrets.py``), and ``verify ID``
(``verify.py``), which re-checks a result's digests back to its data.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from assay import __version__, errors

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assay",
        description="Assay: an open platform for auditing AI systems.",
        epilog="The entity commands talk to a server (--endpoint and --token, or "
        "ASSAY_API_ENDPOINT and ASSAY_API_TOKEN): assay <kind> list|get|delete|wait|download "
        "ID, e.g. 'assay evaluations list --status Complete'; 'assay <kind> --help' for more. "
        "Serving pipelines: assay pipelines list|get|versions|deploy|undeploy|logs|export|"
        "counters.",
    )
    parser.add_argument("--version", action="version", version=f"assay {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from assay.cli.demo import DESCRIPTION, HELP, add_demo_arguments

    add_demo_arguments(sub.add_parser("demo", help=HELP, description=DESCRIPTION))
    from assay.cli.entities import add_entity_parsers
    from assay.cli.pipelines import add_pipeline_parser
    from assay.cli.secrets import add_secret_parser
    from assay.cli.serve import add_serve_parser
    from assay.cli.tokens import add_token_parser

    add_serve_parser(sub)
    add_token_parser(sub)
    add_entity_parsers(sub)
    add_pipeline_parser(sub)
    add_secret_parser(sub)
    from assay.cli.verify import add_verify_parser

    add_verify_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``assay`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from assay.cli.demo import run_demo

            return run_demo(
                args.data,
                account=args.account,
                text=args.text,
                serve=args.serve,
                host=args.host,
                port=args.port,
            )
        if args.command == "serve":
            from assay.cli.serve import run_serve

            return run_serve(args)
        if args.command == "token":
            from assay.cli.tokens import run_token

            return run_token(args)
        if getattr(args, "entity_parser", None) is not None:
            from assay.cli.entities import run_entity_command

            return run_entity_command(args)
        if getattr(args, "pipeline_parser", None) is not None:
            from assay.cli.pipelines import run_pipeline_command

            return run_pipeline_command(args)
        if getattr(args, "secret_parser", None) is not None:
            from assay.cli.secrets import run_secret_command

            return run_secret_command(args)
        if getattr(args, "verify_parser", None) is not None:
            from assay.cli.verify import run_verify

            return run_verify(args)
        parser.print_help()
        return 0
    except errors.AssayError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"assay: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("assay: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`assay datasets list | head`): end quietly, as a pipe's
        # writer does; nothing more may be written to the closed pipe, at exit either
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + 13  # as a process ended by SIGPIPE
    except Exception as exc:
        if getattr(args, "debug", False):
            raise
        print(
            f"assay: error: unexpected {type(exc).__name__}: {exc} (run the command again with "
            "--debug for the traceback, and report it)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
