"""``assay token create|revoke``: API tokens for a server's users, made by its operator.

``create`` prints a token signed with the data directory's secret (the one ``assay serve
--data DIR`` uses); ``revoke`` adds a token's id to the data directory's revoked list, which a
running server reads at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["add_token_parser", "run_token"]


def add_token_parser(sub: Any) -> None:
    """Add ``token`` to the ``assay`` command's sub-commands."""
    token = sub.add_parser(
        "token",
        help="make or revoke API tokens for the server",
        description="API tokens carry grants: which functions on which resources of which "
        "accounts (or entities) the holder may call.",
    )
    token.set_defaults(token_parser=token)
    commands = token.add_subparsers(dest="token_command", metavar="COMMAND")
    data_help = "directory of the server's state (env: ASSAY_DATA_DIR; default: assay-data)"

    create = commands.add_parser(
        "create",
        help="print a new API token",
        description="Print a token for --account. Without --grant it allows everything on the "
        "account's own entities. A grant is RESOURCES:FUNCTIONS[:TARGETS]: comma-separated "
        "resources (datasets, evaluations, ... or *), functions (get, query, create, edit, "
        "delete, upload, download, consume, terminate, ... or *) and targets (account names, "
        "* for every account, or entity ids; default: --account). E.g. "
        "--grant 'datasets,evaluations:get,query' --grant 'inferencesessions:consume:<id>'.",
    )
    create.add_argument("--data", default=os.environ.get("ASSAY_DATA_DIR"), help=data_help)
    create.add_argument(
        "--init",
        action="store_true",
        help="make a new platform in --data if there is none yet (without it, a folder that "
        "holds no platform is refused: a mistyped --data would sign with a key no server has)",
    )
    create.add_argument(
        "--account",
        default=os.environ.get("ASSAY_ACCOUNT"),
        help="the account the token is for (env: ASSAY_ACCOUNT)",
    )
    create.add_argument(
        "--grant",
        action="append",
        default=None,
        metavar="RESOURCES:FUNCTIONS[:TARGETS]",
        help="a grant (repeatable); default: everything on the account's entities",
    )
    create.add_argument(
        "--expires",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="days until the token expires (default: 30)",
    )

    revoke = commands.add_parser(
        "revoke",
        help="revoke an API token",
        description="Refuse a token from now on (a running server reads the list at once).",
    )
    revoke.add_argument("--data", default=os.environ.get("ASSAY_DATA_DIR"), help=data_help)
    revoke.add_argument("token", metavar="TOKEN", help="the token, or its id (the jti claim)")


def run_token(args: argparse.Namespace) -> int:
    """Run ``assay token <command>``; the exit status."""
    if args.token_command is None:
        args.token_parser.print_help()
        return 0
    from assay import errors
    from assay.core.tokens import TokenSigner
    from assay.server.auth import RevocationList, issue_token, parse_grant
    from assay.server.settings import ServerSettings

    settings = ServerSettings.from_env(data_dir=args.data)
    if not getattr(args, "init", False):
        _require_platform(settings)
    if args.token_command == "create":
        if not args.account:
            raise errors.ValidationError(
                "--account is required (or set ASSAY_ACCOUNT)", field="account"
            )
        grants = [parse_grant(spec, args.account) for spec in args.grant] if args.grant else None
        signer = TokenSigner(settings.secret())
        print(issue_token(signer, account=args.account, grants=grants, expires=args.expires))
        return 0
    if args.token_command == "revoke":
        token_id, expires = args.token, None
        if args.token.count(".") == 2:
            claims = TokenSigner(settings.secret()).verify(args.token)
            token_id, expires = claims["jti"], claims["exp"]
        RevocationList(settings.revoked_tokens_path).revoke(token_id, expires=expires)
        print(f"revoked token {token_id}", file=sys.stderr)
        return 0
    raise AssertionError(f"unknown token command {args.token_command!r}")  # argparse checks


def _require_platform(settings: Any) -> None:
    """Refuse a directory that holds no platform: a token signed with a key made there
    would be refused by the real server (a wrong ``--data`` used to make a new platform)."""
    from pathlib import Path

    from assay import errors
    from assay.server.settings import SECRET_FILE
    from assay.server.state import DATABASE_FILE

    data = Path(settings.data_dir)
    if (data / SECRET_FILE).is_file() or (data / DATABASE_FILE).is_file():
        return
    raise errors.ValidationError(
        f"--data {str(data)!r} is not an Assay platform's directory (it has no {SECRET_FILE} "
        f"and no {DATABASE_FILE}); give the directory the server runs on (assay serve --data "
        "DIR, or ASSAY_DATA_DIR), or pass --init to make a new platform there",
        field="--data",
        value=str(data),
    )
