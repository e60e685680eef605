"""The everyday commands over a server's entities: a thin layer over ``assay.client.Client``.

::

    assay <kind> list [--name N] [--status S] [--label KEY=VALUE]... [--account A] [--limit N] [--json]
    assay <kind> get ID [--json]
    assay <kind> delete ID
    assay <kind> wait ID [--timeout SECONDS] [--json]
    assay <kind> watch ID [--interval SECONDS]
    assay <evaluations|inferencesessions|measurements|safetycases> terminate ID
    assay <kind> download ID DEST
    assay <evaluations|inferencesessions|measurements|safetycases> logs ID [--limit N] [--since T]
    assay scores list [--analysis ID] [--method ID] [--name N] ... [--json]

``<kind>`` is any of :data:`KINDS`. Each command calls one ``Client`` method (``query``,
``get``, ``delete``, ``wait``, ``terminate``, ``download``, ``logs``, ``scores.query``;
``watch`` polls ``get`` and, where the kind has one, ``logs``). The server and the API token
come from ``--endpoint`` / ``--token`` or ``ASSAY_API_ENDPOINT`` / ``ASSAY_API_TOKEN``.
``assay.client`` is imported only when a command runs, so ``assay --help`` stays fast.

Exit status: 0 done; 1 ``wait`` or ``watch`` saw the entity end unsuccessfully (``Failed``,
``Error``, ``Terminated``, ``Deleted``); 2 an error, printed as one line on standard error
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors

if TYPE_CHECKING:
    from assay.client import Client

__all__ = [
    "KINDS",
    "LOG_KINDS",
    "TERMINATE_KINDS",
    "add_entity_parsers",
    "connection_options",
    "positive_int",
    "run_entity_command",
]

#: The kinds the everyday commands work on: the command name → the entity kind.
KINDS = {
    "datasets": "Dataset",
    "evaluations": "Evaluation",
    "families": "Family",
    "inferenceservices": "InferenceService",
    "inferencesessions": "InferenceSession",
    "measurements": "Measurement",
    "methods": "Method",
    "models": "Model",
    "modules": "Module",
    "reports": "Report",
    "safetycases": "SafetyCase",
}
#: The kinds whose workflows keep a log (their workflow's lines, their Method's or replicas'
#: output).
LOG_KINDS = ("evaluations", "inferencesessions", "measurements", "safetycases")
_LOG_SOURCES = {
    "evaluations": " and what its own session's replicas printed",
    "inferencesessions": " and what its replicas printed",
    "measurements": " and what its Method printed",
    "safetycases": " and what its Method printed (a failed notebook's traceback)",
}
#: The kinds whose work can be stopped (``terminate``).
TERMINATE_KINDS = ("evaluations", "inferencesessions", "measurements", "safetycases")
#: Seconds between two looks of ``watch`` (by default).
WATCH_INTERVAL = 1.0
#: ``scores list`` filters: option → the ``scores.query`` filter.
SCORE_FILTERS = {
    "analysis": "analysis",
    "method": "method",
    "name": "name",
    "dataset": "dataset",
    "evaluation": "evaluation",
    "inference_service": "inferenceService",
    "model": "model",
}


def connection_options() -> argparse.ArgumentParser:
    """The options every command that talks to a server takes."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("server")
    group.add_argument(
        "--endpoint",
        metavar="URL",
        help="the Assay server, e.g. http://127.0.0.1:8000 (env: ASSAY_API_ENDPOINT)",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        help="an API token, from 'assay token create' (env: ASSAY_API_TOKEN)",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=os.environ.get("ASSAY_DEBUG", "") not in ("", "0", "false", "no"),
        help="show the traceback of an error (env: ASSAY_DEBUG=1)",
    )
    return common


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


#: The status a kind's successful entities have (the --help examples must find something).
_SUCCESS = {
    "Dataset": "Ready",
    "Model": "Ready",
    "Module": "Ready",
    "InferenceService": "Ready",
    "InferenceSession": "Ready",
    "Method": "Ready",
    "Family": "Ready",
}


def add_entity_parsers(sub: Any) -> None:
    """Add ``<kind> list|get|delete|wait|download[|logs]`` and ``scores list``."""
    common = connection_options()
    common.add_argument(
        "--data",
        metavar="DIR",
        help="an embedded platform's directory (LocalPlatform) instead of a server",
    )
    for command, kind in KINDS.items():
        parser = sub.add_parser(
            command,
            help=f"{kind} entities on a server"
            + (" (list, get, delete, wait, download, logs)" if command in LOG_KINDS else ""),
            description=f"{kind} entities on an Assay server (--endpoint, --token or "
            "ASSAY_API_ENDPOINT, ASSAY_API_TOKEN), or on an embedded platform (--data DIR).",
            epilog=f"e.g. assay {command} list --status {_SUCCESS.get(kind, 'Complete')} "
            f"--label team=red; assay {command} get ID --json",
        )
        parser.set_defaults(entity_parser=parser, kind=command)
        actions = parser.add_subparsers(dest="action", metavar="ACTION")

        listing = actions.add_parser(
            "list",
            parents=[common],
            help=f"list {kind} entities (oldest first)",
            description=f"List the {kind} entities the token may see, oldest first, as a "
            "table (id, name, status, reason, created) or, with --json, as JSON.",
        )
        listing.add_argument("--name", help="only those with this name")
        listing.add_argument("--status", help="only those in this status, e.g. Ready, Complete")
        listing.add_argument(
            "--label",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="only those with this label (repeatable; KEY alone: any value)",
        )
        listing.add_argument("--account", help="only those of this account")
        listing.add_argument("--limit", type=positive_int, metavar="N", help="at most N")
        listing.add_argument("--json", action="store_true", help="print JSON (a list)")

        get = actions.add_parser(
            "get",
            parents=[common],
            help=f"show one {kind}",
            description=f"Show one {kind}: its main fields or, with --json, all of it.",
        )
        get.add_argument("id", metavar="ID", help=f"the {kind}'s id")
        get.add_argument("--json", action="store_true", help="print the entity as JSON")

        delete = actions.add_parser(
            "delete",
            parents=[common],
            help=f"mark a {kind} Deleted",
            description=f"Mark a {kind} Deleted (the server keeps its record and data).",
        )
        delete.add_argument("id", metavar="ID", help=f"the {kind}'s id")

        wait = actions.add_parser(
            "wait",
            parents=[common],
            help=f"wait until a {kind}'s workflow is over",
            description=f"Wait until the {kind}'s status is terminal and show it. Exit status "
            "0 if it succeeded (Ready, Complete), 1 if not, 2 on an error or a timeout.",
        )
        wait.add_argument("id", metavar="ID", help=f"the {kind}'s id")
        wait.add_argument(
            "--timeout",
            type=_seconds,
            metavar="SECONDS",
            help="give up after this long (default: wait as long as it takes)",
        )
        wait.add_argument("--json", action="store_true", help="print the entity as JSON")

        watch = actions.add_parser(
            "watch",
            parents=[common],
            help=f"follow a {kind} until it ends",
            description=f"Follow the {kind}: print its status and progress message when they "
            "change, and its new log lines as they are written, until it ends. Exit status 0 "
            "if it succeeded (Ready, Complete), 1 if not, 2 on an error.",
        )
        watch.add_argument("id", metavar="ID", help=f"the {kind}'s id")
        watch.add_argument(
            "--interval",
            type=_seconds,
            default=WATCH_INTERVAL,
            metavar="SECONDS",
            help=f"seconds between two looks (default {WATCH_INTERVAL:g})",
        )

        if command in TERMINATE_KINDS:
            terminate = actions.add_parser(
                "terminate",
                parents=[common],
                help=f"stop a {kind}'s work",
                description=f"Stop the {kind}: it becomes Terminated and its work stops "
                "(within a second), keeping what it wrote. An error if it has ended already.",
            )
            terminate.add_argument("id", metavar="ID", help=f"the {kind}'s id")

        download = actions.add_parser(
            "download",
            parents=[common],
            help=f"download a {kind}'s files",
            description=f"Download every file of a Ready or Complete {kind} into DEST, each at "
            "its path and checked against the server's md5; prints the files.",
        )
        download.add_argument("id", metavar="ID", help=f"the {kind}'s id")
        download.add_argument("dest", metavar="DEST", help="the directory to download into")

        if command in LOG_KINDS:
            logs = actions.add_parser(
                "logs",
                parents=[common],
                help=f"print the {kind}'s log",
                description=f"Print the {kind}'s log (so far, while it runs), one "
                "'TIME [stream] message' per line: what its workflow wrote"
                + _LOG_SOURCES.get(command, "")
                + ".",
            )
            logs.add_argument("id", metavar="ID", help=f"the {kind}'s id")
            logs.add_argument(
                "--limit",
                type=positive_int,
                metavar="N",
                help="only the last N lines (default: all)",
            )
            logs.add_argument(
                "--since",
                metavar="T",
                help="only lines written since T: a duration ('30m', '2h', '1d') or an "
                "ISO 8601 time",
            )

    scores = sub.add_parser(
        "scores",
        help="the scores safety cases published on a server (list)",
        description="Scores: the values safety cases publish, comparable across systems.",
        epilog="e.g. assay scores list --method ID --name accuracy",
    )
    scores.set_defaults(entity_parser=scores, kind="scores")
    actions = scores.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser(
        "list",
        parents=[common],
        help="list scores",
        description="List the scores the token may see (analysis, name, value, text), or "
        "with --json as JSON. Filters add up.",
    )
    for option, about in (
        ("analysis", "published by this safety case"),
        ("method", "of this Method"),
        ("name", "with this name"),
        ("dataset", "about this Dataset"),
        ("evaluation", "about this Evaluation"),
        ("inference-service", "about this InferenceService"),
        ("model", "about this Model"),
    ):
        listing.add_argument(
            f"--{option}", metavar="ID" if option != "name" else "NAME", help=f"only those {about}"
        )
    listing.add_argument("--json", action="store_true", help="print JSON (a list)")


def run_entity_command(args: argparse.Namespace) -> int:
    """Run ``assay <kind> <action>``; the exit status."""
    if args.action is None:
        args.entity_parser.print_help()
        return 0
    if getattr(args, "data", None):
        from assay.local import LocalPlatform

        require_platform_directory(args.data)
        with LocalPlatform(args.data) as platform:
            if args.kind == "scores":
                return _scores(platform, args)  # type: ignore[arg-type]
            return _ACTIONS[args.action](platform, args)  # type: ignore[arg-type]
    from assay.client import Client

    with Client(args.endpoint, args.token) as client:
        if args.kind == "scores":
            return _scores(client, args)
        return _ACTIONS[args.action](client, args)


def require_platform_directory(data: str) -> None:
    """Refuse a directory that holds no embedded platform (``assay.db``), naming it: opening
    it would make a new, empty platform there."""
    from assay.local.platform import DATABASE_FILE

    if not (Path(data) / DATABASE_FILE).is_file():
        raise errors.ValidationError(
            f"--data {data!r} is not an Assay platform's directory (it has no {DATABASE_FILE});"
            " give the directory the platform was made in",
            field="--data",
            value=data,
        )


def _group(client: Client, args: argparse.Namespace) -> Any:
    return getattr(client, args.kind)


def _labels(specs: list[str]) -> dict[str, Any] | None:
    """``--label KEY=VALUE`` options as a labels filter (a key given twice: any of)."""
    labels: dict[str, Any] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not key:
            raise errors.ValidationError(
                f"--label {spec!r}: give KEY=VALUE (or KEY alone for any value)",
                field="label",
                value=spec,
            )
        given: Any = value if sep else None
        if key in labels and labels[key] is not None and given is not None:
            before = labels[key]
            labels[key] = [*before, given] if isinstance(before, list) else [before, given]
        else:
            labels[key] = given
    return labels or None


def _list(client: Client, args: argparse.Namespace) -> int:
    from assay.cli.output import ENTITY_COLUMNS, entity_rows, table, to_json
    from assay.schema.status import Status

    if args.status is not None and args.status not in Status.ALL:
        raise errors.ValidationError(
            f"--status {args.status!r} is not a status; the statuses are "
            f"{', '.join(sorted(Status.ALL))}",
            field="status",
            value=args.status,
        )
    filters = {
        "name": args.name,
        "status": args.status,
        "labels": _labels(args.label),
        "account": args.account,
        "limit": args.limit,
    }
    entities = _group(client, args).query(**{k: v for k, v in filters.items() if v is not None})
    if args.json:
        print(to_json(entities))
    elif entities:
        print(table(ENTITY_COLUMNS, entity_rows(entities)))
    else:
        print(f"no {args.kind} found", file=sys.stderr)
    return 0


def _get(client: Client, args: argparse.Namespace) -> int:
    from assay.cli.output import entity_fields, to_json

    entity = _group(client, args).require(args.id)
    print(to_json(entity) if args.json else entity_fields(entity))
    return 0


def _delete(client: Client, args: argparse.Namespace) -> int:
    _group(client, args).delete(args.id)
    print(f"{KINDS[args.kind]} {args.id} deleted")
    return 0


def _wait(client: Client, args: argparse.Namespace) -> int:
    from assay.cli.output import ENTITY_COLUMNS, entity_rows, table, to_json
    from assay.schema.status import is_status_success

    entity = _group(client, args).wait(args.id, timeout=args.timeout)
    print(to_json(entity) if args.json else table(ENTITY_COLUMNS, entity_rows([entity])))
    if is_status_success(entity.status):
        return 0
    state = entity.status + (f" ({entity.reason})" if entity.reason else "")
    detail = f": {entity.message}" if entity.message else ""
    print(f"assay: {entity.kind} {entity.id} ended {state}{detail}", file=sys.stderr)
    return 1


def _terminate(client: Client, args: argparse.Namespace) -> int:
    entity = _group(client, args).terminate(args.id)
    reason = f" ({entity.reason})" if entity.reason else ""
    print(f"{KINDS[args.kind]} {args.id} {entity.status}{reason}")
    return 0


def _watch(client: Client, args: argparse.Namespace) -> int:
    """Print status changes and new log lines until the entity ends (see ``wait`` for the
    exit status)."""
    from assay.schema.status import is_status_success, is_status_terminal

    group = _group(client, args)
    logs = getattr(group, "logs", None)
    shown = 0  # log lines printed so far
    last: tuple[Any, ...] | None = None
    while True:
        entity = group.require(args.id)  # first the status, then the lines written until then
        if callable(logs):
            lines = logs(args.id).splitlines()
            for line in lines[shown:]:
                print(line)
            shown = max(shown, len(lines))
        state = (entity.status, entity.reason, entity.message)
        reason = f" ({entity.reason})" if entity.reason else ""
        if state != last:
            last = state
            message = f": {entity.message}" if entity.message else ""
            print(f"{entity.kind} {entity.id} {entity.status}{reason}{message}")
        sys.stdout.flush()
        if is_status_terminal(entity.status):
            if is_status_success(entity.status):
                return 0
            print(
                f"assay: {entity.kind} {entity.id} ended {entity.status}{reason}", file=sys.stderr
            )
            return 1
        time.sleep(args.interval)


def _download(client: Client, args: argparse.Namespace) -> int:
    group = _group(client, args)
    if hasattr(group, "download"):
        files = group.download(args.id, args.dest)
    else:  # an embedded platform: its files are here, copy them
        files = _copy_artifacts(client, args.kind, args.id, Path(args.dest))
    for path in files:
        print(path)
    print(
        f"downloaded {len(files)} file{'s' if len(files) != 1 else ''} of "
        f"{KINDS[args.kind]} {args.id} into {args.dest}",
        file=sys.stderr,
    )
    return 0


def _logs(client: Client, args: argparse.Namespace) -> int:
    text = _group(client, args).logs(args.id, limit=args.limit, since=args.since)
    sys.stdout.write(text)
    if text and not text.endswith("\n"):
        sys.stdout.write("\n")
    return 0


def _scores(client: Client, args: argparse.Namespace) -> int:
    from assay.cli.output import SCORE_COLUMNS, score_rows, table, to_json

    filters = {
        name: getattr(args, option)
        for option, name in SCORE_FILTERS.items()
        if getattr(args, option) is not None
    }
    scores = client.scores.query(**filters)
    if args.json:
        print(to_json(scores))
    elif scores:
        print(table(SCORE_COLUMNS, score_rows(scores)))
    else:
        print("no scores found", file=sys.stderr)
    return 0


_ACTIONS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "list": _list,
    "get": _get,
    "delete": _delete,
    "wait": _wait,
    "watch": _watch,
    "terminate": _terminate,
    "download": _download,
    "logs": _logs,
}


def _copy_artifacts(platform: Any, kind: str, id: str, dest: Path) -> list[Path]:
    """Copy the files of a Ready or Complete entity of an embedded platform into ``dest``
    (each at its artifact path; the platform's own ``.assay/`` files left out)."""
    import shutil

    from assay.schema.status import is_status_success

    entity = getattr(platform, kind).require(id)
    if not is_status_success(entity.status):
        raise errors.ConflictError(
            f"cannot download {entity.kind} {id}: it is {entity.status}; wait for it first"
        )
    storage = platform.core.storage
    copied = []
    for info in storage.list(id):
        if info.path.startswith(".assay/"):
            continue
        target = dest / info.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with storage.open(id, info.path) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out)
        copied.append(target)
    return copied
