"""``assay secrets set|list|delete``: the secrets of an account (runner credentials), on a
server (``Client.secrets``) or, with ``--data``, on an embedded platform
(``LocalPlatform.secrets``).

::

    assay secrets set NAME [--account A]      # the value from standard input, or a prompt
    assay secrets list [--account A]
    assay secrets delete NAME [--account A]

A value is never an argument (the process list and the shell's history would show it): ``set``
reads it from standard input when that is not a terminal (``printf %s "$KEY" | assay secrets
set NAME``), else it prompts without echo. One trailing newline is dropped.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from assay import errors

__all__ = ["add_secret_parser", "read_value", "run_secret_command"]


def add_secret_parser(sub: Any) -> None:
    """Add ``secrets`` to the ``assay`` command's sub-commands."""
    from assay.cli.entities import connection_options

    common = connection_options()
    place = argparse.ArgumentParser(add_help=False)
    place.add_argument(
        "--account",
        help="the account whose secrets these are (default: the token's account; with "
        "--data, the platform's: ASSAY_ACCOUNT)",
    )
    place.add_argument(
        "--data",
        metavar="DIR",
        help="an embedded platform's directory (LocalPlatform) instead of a server",
    )
    parser = sub.add_parser(
        "secrets",
        help="an account's secrets: credentials for its http/openai services",
        description="Secrets are credentials that an account's services use "
        '({"credential": {"secret": NAME}}), kept out of entities; a service uses its own '
        "account's secrets only. On a server (--endpoint, --token or ASSAY_API_ENDPOINT, "
        "ASSAY_API_TOKEN) or an embedded platform (--data).",
        epilog='e.g. printf %s "$OPENAI_API_KEY" | assay secrets set openai-key',
    )
    parser.set_defaults(secret_parser=parser)
    actions = parser.add_subparsers(dest="secret_action", metavar="ACTION")
    setting = actions.add_parser(
        "set",
        parents=[common, place],
        help="store a secret (the value from standard input, or a prompt)",
        description="Store (or replace) a secret. The value is read from standard input "
        "(one trailing newline dropped) or, on a terminal, from a prompt that does not echo; "
        "never from the command line.",
    )
    setting.add_argument("name", metavar="NAME", help="the secret's name")
    actions.add_parser("list", parents=[common, place], help="the names of the secrets")
    deleting = actions.add_parser("delete", parents=[common, place], help="forget a secret")
    deleting.add_argument("name", metavar="NAME", help="the secret's name")


def read_value(name: str, stdin: TextIO | None = None) -> str:
    """A secret's value: standard input, or a prompt without echo on a terminal."""
    stream = sys.stdin if stdin is None else stdin
    if stream.isatty():
        import getpass

        value = getpass.getpass(f"value of secret {name!r}: ")
    else:
        value = stream.read()
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    if not value:
        raise errors.ValidationError(
            f'secret {name!r}: no value was given; pipe it in (printf %s "$VALUE" | assay '
            f"secrets set {name}) or type it at the prompt",
            field="value",
        )
    return value


def run_secret_command(args: argparse.Namespace) -> int:
    """Run ``assay secrets <action>``; the exit status."""
    if args.secret_action is None:
        args.secret_parser.print_help()
        return 0
    if args.data:
        from assay.local import LocalPlatform

        with LocalPlatform(args.data, account=args.account) as platform:
            return _act(platform.secrets, args, {})
    from assay.client import Client

    with Client(args.endpoint, args.token) as client:
        return _act(client.secrets, args, {"account": args.account} if args.account else {})


def _act(secrets: Any, args: argparse.Namespace, where: dict[str, Any]) -> int:
    if args.secret_action == "set":
        secrets.set(args.name, read_value(args.name), **where)
        print(f"assay: secret {args.name!r} set", file=sys.stderr)
    elif args.secret_action == "list":
        for name in secrets.names(**where):
            print(name)
    elif not secrets.delete(args.name, **where):
        raise errors.NotFoundError(f"there is no secret {args.name!r}", kind="Secret", id=args.name)
    return 0
