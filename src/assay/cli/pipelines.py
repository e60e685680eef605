"""The pipeline commands: a thin layer over ``assay.client.Client.pipelines``.

::

    assay pipelines list [--account A] [--json]
    assay pipelines get NAME [--json]
    assay pipelines versions NAME [--json]
    assay pipelines deploy NAME --version N [--replicas R]
    assay pipelines undeploy NAME
    assay pipelines logs NAME [--limit N | --all] [--start T] [--end T] [--valid | --anomalies]
                              [--failures] [--columns in,out,...] [--json]
    assay pipelines export NAME DIRECTORY [--arrow] [--limit-size SIZE] [--prefix P] [filters]
    assay pipelines counters NAME [--json]

Each command calls ``client.pipelines.list`` / ``get`` and one method of the pipeline
(``versions``, ``deploy(version=n)``, ``undeploy``, ``logs``, ``export_logs``,
``log_counters``). Building and deploying a *new* definition is done from Python
(``client.pipelines.create(name).add_model_step(...).deploy()``); ``deploy`` here starts a
stored version again (a rollback or a restart). Every per-pipeline command takes
``--account`` (default: the token's). Server options, exit statuses and errors as in
:mod:`assay.cli.entities`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from assay.cli.entities import connection_options, positive_int

if TYPE_CHECKING:
    from assay.client import Client
    from assay.client._pipelines import RemotePipeline

__all__ = ["add_pipeline_parser", "run_pipeline_command"]

#: The columns of ``pipelines list``.
PIPELINE_COLUMNS = ("NAME", "DEPLOYED", "VERSIONS", "INFERENCE SERVICE")
#: The columns of ``pipelines versions``.
VERSION_COLUMNS = ("VERSION", "CREATED", "STEPS", "DEPLOYED")
#: The log groups ``pipelines logs`` shows in its table when no ``--columns`` are given.
DEFAULT_LOG_GROUPS = ("in", "out")
#: Records ``pipelines logs`` reads when neither ``--limit`` nor ``--all`` is given.
DEFAULT_LIMIT = 100


def _iso_time(text: str) -> datetime:
    """An ISO 8601 time for ``--start`` / ``--end``; one without a zone is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2024-05-01T12:00:00Z or 2024-05-01, got {text!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _size(text: str) -> str:
    """A size for ``--limit-size`` such as ``100 MiB``, checked as ``export_logs`` checks it."""
    from assay import errors
    from assay.pipelines._log_export import parse_size

    try:
        parse_size(text)
    except errors.ValidationError:
        raise argparse.ArgumentTypeError(
            f"expected a size such as '100 MiB' (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), "
            f"got {text!r}"
        ) from None
    return text


def _columns(text: str) -> list[str]:
    columns = [c.strip() for c in text.split(",") if c.strip()]
    if not columns:
        raise argparse.ArgumentTypeError(f"expected groups or columns such as in,out, got {text!r}")
    return columns


def _filters(parser: argparse.ArgumentParser) -> None:
    """The log selection ``logs`` and ``export`` share."""
    group = parser.add_argument_group("which records")
    group.add_argument(
        "--start", type=_iso_time, metavar="TIME", help="from this ISO 8601 time (no zone: UTC)"
    )
    group.add_argument(
        "--end", type=_iso_time, metavar="TIME", help="before this ISO 8601 time (no zone: UTC)"
    )
    validity = group.add_mutually_exclusive_group()
    validity.add_argument(
        "--valid", dest="valid", action="store_true", default=None, help="only valid records"
    )
    validity.add_argument(
        "--anomalies",
        dest="valid",
        action="store_false",
        help="only records that failed a validation",
    )
    group.add_argument(
        "--failures", action="store_true", help="the failure log (rows a step failed on) instead"
    )


def add_pipeline_parser(sub: Any) -> None:
    """Add ``pipelines list|get|versions|deploy|undeploy|logs|export|counters``."""
    common = connection_options()
    named = argparse.ArgumentParser(add_help=False, parents=[common])
    named.add_argument("name", metavar="NAME", help="the pipeline's name")
    named.add_argument("--account", help="the pipeline's account (default: the token's)")

    parser = sub.add_parser(
        "pipelines",
        help="serving pipelines on a server (list, get, versions, deploy, logs, export, ...)",
        description="Serving pipelines on an Assay server (--endpoint, --token or "
        "ASSAY_API_ENDPOINT, ASSAY_API_TOKEN). A new definition is built and deployed from "
        "Python (client.pipelines.create(name).add_model_step(...).deploy()); these commands "
        "show pipelines, read their logs and start a stored version again.",
        epilog="e.g. assay pipelines logs NAME --limit 20 --columns in,out; "
        "assay pipelines deploy NAME --version 2",
    )
    parser.set_defaults(pipeline_parser=parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    listing = actions.add_parser(
        "list",
        parents=[common],
        help="list the pipelines",
        description="List the pipelines ever deployed (name, deployed version, number of "
        "versions, the deployed version's InferenceService), or with --json as JSON.",
    )
    listing.add_argument("--account", help="those of this account (default: the token's)")
    listing.add_argument("--json", action="store_true", help="print JSON (a list)")

    get = actions.add_parser(
        "get",
        parents=[named],
        help="show one pipeline and its steps",
        description="Show a pipeline: its versions, what is deployed, and one line per step "
        "of its latest definition.",
    )
    get.add_argument("--json", action="store_true", help="print JSON")

    versions = actions.add_parser(
        "versions",
        parents=[named],
        help="list a pipeline's stored versions",
        description="List a pipeline's stored versions, oldest first (version, created, "
        "number of steps, whether it is deployed), or with --json their definitions as JSON.",
    )
    versions.add_argument("--json", action="store_true", help="print JSON (a list)")

    deploy = actions.add_parser(
        "deploy",
        parents=[named],
        help="start a stored version again (roll back or restart)",
        description="Start a stored version of a pipeline again, making it the current "
        "definition: a rollback, or a restart with other replicas. Deploying a NEW definition "
        "is done from Python: client.pipelines.create(name).add_model_step(...).deploy().",
    )
    deploy.add_argument(
        "--version", type=positive_int, required=True, metavar="N", help="the version to start"
    )
    deploy.add_argument(
        "--replicas",
        type=positive_int,
        default=1,
        metavar="R",
        help="replicas of every step's service (default: 1)",
    )

    actions.add_parser(
        "undeploy",
        parents=[named],
        help="stop the deployed version",
        description="Stop the deployed version of a pipeline; its versions and log stay.",
    )

    logs = actions.add_parser(
        "logs",
        parents=[named],
        help="print logged inferences",
        description="Print a pipeline's logged inferences: the newest first, or with --start "
        "/ --end the first of that range. A table of the time and the chosen columns "
        "(default: the in and out groups), or with --json one JSON object per line (all "
        "columns, unless --columns). When more records exist a note says so on stderr.",
    )
    amount = logs.add_mutually_exclusive_group()
    amount.add_argument(
        "--limit",
        type=positive_int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N records (default: {DEFAULT_LIMIT})",
    )
    amount.add_argument(
        "--all", dest="limit", action="store_const", const=None, help="every record"
    )
    logs.add_argument(
        "--columns",
        type=_columns,
        metavar="GROUPS",
        help="comma-separated groups or whole column names, e.g. in,out or in.text,anomaly",
    )
    logs.add_argument("--json", action="store_true", help="print JSON Lines")
    _filters(logs)

    export = actions.add_parser(
        "export",
        parents=[named],
        help="write the log to files",
        description="Write a pipeline's log into DIRECTORY as JSON Lines (or Arrow with "
        "--arrow), a new file whenever the schema changes, stopping before --limit-size; "
        "prints the files, and on stderr how far it got.",
    )
    export.add_argument("directory", metavar="DIRECTORY", help="the directory to write into")
    export.add_argument("--arrow", action="store_true", help="write Arrow IPC files")
    export.add_argument(
        "--limit-size",
        type=_size,
        default="100 MiB",
        metavar="SIZE",
        help="stop before the files pass this size (default: '100 MiB')",
    )
    export.add_argument("--prefix", help="the files' name prefix (default: the pipeline's name)")
    _filters(export)

    counters = actions.add_parser(
        "counters",
        parents=[named],
        help="show the log's counters",
        description="Show the counters of the server's log of a pipeline: written and failed "
        "(durable records of the log and the failure log), last_seq (with nothing lost, "
        "written + failed = last_seq + 1), journaled (durable, not yet in segments), segments, "
        "dropped (refused by a full queue of the asynchronous log) and queued (accepted, not "
        "yet durable).",
    )
    counters.add_argument("--json", action="store_true", help="print JSON")


def run_pipeline_command(args: argparse.Namespace) -> int:
    """Run ``assay pipelines <action>``; the exit status."""
    if args.action is None:
        args.pipeline_parser.print_help()
        return 0
    from assay.client import Client

    with Client(args.endpoint, args.token) as client:
        if args.action == "list":
            return _list(client, args)
        pipeline = client.pipelines.get(args.name, account=args.account)
        return _ACTIONS[args.action](pipeline, args)


def _summary(pipeline: RemotePipeline) -> dict[str, Any]:
    versions = pipeline.versions()
    deployed = pipeline.deployed_version
    service = pipeline.inference_service
    return {
        "name": pipeline.name,
        "account": pipeline.account,
        "deployedVersion": deployed.version if deployed is not None else None,
        "versions": len(versions),
        "latestVersion": versions[-1].version if versions else None,
        "inferenceService": service.id if service is not None else None,
        "inferenceSession": pipeline.inference_session,
    }


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False)


def _list(client: Client, args: argparse.Namespace) -> int:
    from assay.cli.output import table

    summaries = [
        _summary(client.pipelines.get(name, account=args.account))
        for name in client.pipelines.list(account=args.account)
    ]
    if args.json:
        print(_json(summaries))
    elif summaries:
        rows = [
            (
                s["name"],
                _dash(s["deployedVersion"]),
                str(s["versions"]),
                _dash(s["inferenceService"]),
            )
            for s in summaries
        ]
        print(table(PIPELINE_COLUMNS, rows))
    else:
        print("no pipelines found", file=sys.stderr)
    return 0


def _get(pipeline: RemotePipeline, args: argparse.Namespace) -> int:
    summary = _summary(pipeline)
    steps = pipeline.steps()
    if args.json:
        definition = pipeline.definition.model_dump(mode="json", by_alias=True)
        print(_json({**summary, "steps": steps, "definition": definition}))
        return 0
    labels = {
        "name": "name",
        "account": "account",
        "deployedVersion": "deployed",
        "versions": "versions",
        "latestVersion": "latest",
        "inferenceService": "service",
        "inferenceSession": "session",
    }
    width = max(len(label) for label in labels.values())
    for key, label in labels.items():
        print(f"{label.ljust(width)}  {_dash(summary[key])}")
    print(f"steps of version {_dash(summary['latestVersion'])}:")
    for line in steps:
        print(f"  {line}")
    return 0


def _versions(pipeline: RemotePipeline, args: argparse.Namespace) -> int:
    from assay.cli.output import table, time_text

    versions = pipeline.versions()
    if args.json:
        print(_json([v.model_dump(mode="json", by_alias=True) for v in versions]))
        return 0
    deployed = pipeline.deployed_version
    number = deployed.version if deployed is not None else None
    rows = [
        (
            str(v.version),
            time_text(v.created),
            str(len(v.definition.steps)),
            "yes" if v.version == number else "-",
        )
        for v in versions
    ]
    print(table(VERSION_COLUMNS, rows))
    return 0


def _deploy(pipeline: RemotePipeline, args: argparse.Namespace) -> int:
    version = pipeline.deploy(args.replicas, version=args.version)
    replicas = f"{args.replicas} replica{'s' if args.replicas != 1 else ''}"
    print(f"pipeline {pipeline.name!r} version {version.version} deployed ({replicas})")
    return 0


def _undeploy(pipeline: RemotePipeline, args: argparse.Namespace) -> int:
    pipeline.undeploy()
    print(f"pipeline {pipeline.name!r} undeployed")
    return 0


def _logs(pipeline: RemotePipeline, args: argparse.Namespace) -> int:
    import json
    import warnings

    from assay.cli.output import cell, table, time_text
    from assay.pipelines import MoreLogRecordsWarning
    from assay.pipelines._log_export import json_default

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MoreLogRecordsWarning)
        records = pipeline.logs(
            limit=args.limit,
            start_datetime=args.start,
            end_datetime=args.end,
            valid=args.valid,
            dataset=["time", *args.columns] if args.columns else None,
            arrow=True,
            failures=args.failures,
        )
    for warning in caught:  # any other warning shows as it would have
        if not issubclass(warning.category, MoreLogRecordsWarning):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    rows: list[dict[str, Any]] = records.to_pylist()
    if args.json:
        for row in rows:
            print(json.dumps(row, default=json_default, ensure_ascii=False))
    elif rows:
        names: list[str] = records.schema.names
        shown = [n for n in names if n != "time"]
        if not args.columns:
            shown = [n for n in shown if n.split(".", 1)[0] in DEFAULT_LOG_GROUPS] or shown
        columns = (["time"] if "time" in names else []) + shown
        cells = [
            [time_text(row[c]) if c == "time" else cell(row[c]) for c in columns] for row in rows
        ]
        print(table([c.upper() for c in columns], cells))
    else:
        print("no log records found", file=sys.stderr)
    if any(issubclass(w.category, MoreLogRecordsWarning) for w in caught):
        print(f"{len(rows)} shown, more exist: --limit or --all", file=sys.stderr)
    return 0


def _export(pipeline: RemotePipeline, args: argparse.Namespace) -> int:
    result = pipeline.export_logs(
        args.directory,
        file_prefix=args.prefix,
        data_size_limit=args.limit_size,
        arrow=args.arrow,
        start_datetime=args.start,
        end_datetime=args.end,
        valid=args.valid,
        failures=args.failures,
    )
    for path in result.files:
        print(path)
    print(result.message, file=sys.stderr)
    return 0


def _counters(pipeline: RemotePipeline, args: argparse.Namespace) -> int:
    counters = pipeline.log_counters()
    if args.json:
        print(_json(counters))
        return 0
    width = max((len(k) for k in counters), default=0)
    for key, value in counters.items():
        print(f"{key.ljust(width)}  {value}")
    return 0


_ACTIONS: dict[str, Callable[[RemotePipeline, argparse.Namespace], int]] = {
    "get": _get,
    "versions": _versions,
    "deploy": _deploy,
    "undeploy": _undeploy,
    "logs": _logs,
    "export": _export,
    "counters": _counters,
}
