"""The Measurement and SafetyCase workflow: run a Method in a process of its own.

1. The inputs' data files, the Method's Module directories and the analysis itself go into a
   configuration file in a work directory (``<entity>/.assay/work``).
2. ``python -m assay.analysis.runtime`` runs with the platform's own interpreter (never a
   ``python3`` found on ``PATH``), the Modules in front of the import path, its output in the
   analysis's log (``.assay/logs.txt``; ``measurements.logs(id)``). Deleting or terminating the
   entity stops it; so does the platform's process dying (Linux).
3. On success the output files are stored (``data.parquet`` for a measurement;
   ``index.html`` and ``notebook.ipynb`` for a safety case) and a safety case's scores and
   curves are checked against the Method's specs and recorded. On failure the entity is
   ``Failed`` with the Method's own summary of what went wrong, pointing to the log (where the
   traceback is) and, for a notebook that failed in a cell, to ``notebook.ipynb``: the
   notebook as far as it ran, stored as an artifact (``docs/design/analysis.md``).

The workflow log (``assay.engine.logs``) says when the analysis process started and ended.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from assay import __version__, errors, provenance, sandbox
from assay.analysis import launcher
from assay.analysis.context import write_config
from assay.analysis.runtime import ERROR_FILE, NOTEBOOK_FILE, RESULT_FILE
from assay.engine import WorkflowContext, WorkflowResult
from assay.schema.paths import check_entity_path

__all__ = ["LOG_PATH", "build_scores", "run_analysis"]

#: Where an analysis's log is kept, among its artifacts.
LOG_PATH = ".assay/logs.txt"
WORK_PATH = ".assay/work"
#: Seconds between checks that the entity was not deleted or terminated meanwhile.
POLL_INTERVAL = 0.05
_LOG_TAIL = 2000


def run_analysis(ctx: WorkflowContext) -> WorkflowResult:
    """The handler of Measurement and SafetyCase workflows."""
    core = ctx.platform
    entity: Any = ctx.entity
    storage = ctx.storage
    what = f"{entity.kind} {entity.id}"
    entity_dir = storage.local_dir(entity.id)
    if entity_dir is None:  # a storage elsewhere (S3): work in the entity's local folder
        entity_dir = storage.local_copy(entity.id, ())
    work = entity_dir / WORK_PATH
    shutil.rmtree(work, ignore_errors=True)
    job = work / "job"  # the analysis process's only writable folder
    output = job / "output"
    output.mkdir(parents=True)
    config: dict[str, Any] = {
        "analysis": entity.to_wire(),
        "inputs": _inputs(core, entity),
        "output": str(output),
        "work": str(job),
        "paths": [str(_entity_dir(storage, m)) for m in entity.method.module_ids()],
        "system": _system(core, entity),
    }
    notebook = entity.method.implementation.jupyterNotebook
    if notebook is not None:
        # the one path check, on disk: the notebook must be inside its Module (a Method
        # stored by an older version, or imported, was never checked)
        root = _entity_dir(storage, notebook.notebookModule)
        field = "method.implementation.jupyterNotebook.notebookPath"
        check_entity_path(notebook.notebookPath, field=field, entity=what, root=root)
        config["notebook"] = str(root / notebook.notebookPath)
    # provenance: the method's code as it runs, and the inputs' recorded digests (a safety
    # case's document shows them in its footer)
    started_at = provenance.now()
    method_block = provenance.method_block(core, entity.method)
    inputs = [
        provenance.input_link(core, config["inputs"][b.keyword]["kind"], b.entity)
        for b in entity.inputs
        if b.keyword in config["inputs"]
    ]
    config["provenance"] = {
        "kind": entity.kind,
        "id": entity.id,
        "assay": __version__,
        "started": started_at,
        "method": {
            "id": entity.method.id,
            "name": entity.method.name,
            "digest": method_block["digest"],
        },
        "inputs": inputs,
        "scope": entity.scope.model_dump(mode="json", exclude_none=True),
    }
    config_path = write_config(work / "config.json", config)
    ctx.progress(f"running {entity.method.name!r}", force=True)
    method = entity.method
    ctx.log(f"running Method {method.name!r} ({method.id}) in an analysis process")
    started = time.monotonic()
    code, killed_for = _run_process(ctx, config_path, work, config)
    took = f"after {time.monotonic() - started:.1f} s"
    log_file = work / "logs.txt"
    if log_file.is_file():
        storage.put_file(entity.id, LOG_PATH, log_file)
    if code != 0:
        reason, message, partial = _failure(entity, work, code, log_file, killed_for)
        if partial is not None:
            storage.put_file(entity.id, NOTEBOOK_FILE, partial)
            ctx.log(f"stored the notebook as far as it ran as {NOTEBOOK_FILE}")
        ctx.log(f"the analysis failed {took}: {reason}")
        shutil.rmtree(work, ignore_errors=True)
        raise errors.WorkflowFailedError(message)
    ctx.log(f"the analysis process ended {took}")
    result = _read_json(job / RESULT_FILE, what) or {}
    if entity.kind == "SafetyCase":
        scores, curves = build_scores(entity, result.get("widgets") or [])
        core.scores._put(entity.account, [*scores, *curves])
        message = f"{len(scores)} score(s), {len(curves)} curve(s)"
    else:
        rows = int(result.get("rows", 0))
        message = f"{rows:,} row{'s' if rows != 1 else ''}"
    # only regular files inside the output folder come back (never what a link points to)
    written: dict[str, str | None] = {}
    for name, path in sandbox.regular_files(output):
        written[name] = storage.put_file(entity.id, name, path).sha256
    shutil.rmtree(work, ignore_errors=True)
    block = provenance.make(
        entity.kind,
        entity.id,
        files=provenance.output_files(storage, entity.id, written),
        started=started_at,
        inputs=inputs,
        method=method_block,
        scope=entity.scope.model_dump(mode="json", exclude_none=True),
        settings={"arguments": [a.model_dump(mode="json") for a in entity.arguments or []]},
    )
    provenance.record(core, entity.id, block)
    return WorkflowResult(message=message)


def _entity_dir(storage: Any, id: str) -> Path:
    """The local directory of a Module's files (a copy where the storage is elsewhere)."""
    directory = storage.local_dir(id)
    return Path(directory) if directory is not None else Path(storage.local_copy(id))


def _local_files(storage: Any, id: str, paths: list[str]) -> list[str]:
    """The local files of ``paths`` of entity ``id`` (copies where the storage is
    elsewhere)."""
    local = [storage.local_path(id, p) for p in paths]
    if all(file is not None for file in local):
        return [str(file) for file in local]
    root = Path(storage.local_copy(id, paths))
    return [str(root / p) for p in paths]


def _inputs(core: Any, entity: Any) -> dict[str, Any]:
    """Each input keyword → its entity's kind, id, local Parquet files and schema."""
    inputs: dict[str, Any] = {}
    declared = {i.keyword: str(i.kind) for i in entity.method.inputs}
    for binding in entity.inputs:
        kind = declared.get(binding.keyword, "")
        if kind == "Report":
            raise errors.ValidationError(
                f"{entity.kind} {entity.id}: input {binding.keyword!r} is a Report; Reports "
                "have no data that a Method can read in this version of Assay",
                field="inputs",
                value=binding.keyword,
            )
        group = core.group(kind)
        source = group.require(binding.entity)
        paths = group.data_paths(source)
        schema = getattr(source, "schema_", None)
        inputs[binding.keyword] = {
            "kind": kind,
            "id": source.id,
            "files": _local_files(core.storage, source.id, paths),
            "schema": schema.arrowSchema if schema is not None else None,
        }
    return inputs


def _system(core: Any, entity: Any) -> dict[str, Any]:
    """Names of the scope's entities, for documents that show them."""
    names: dict[str, Any] = {}
    scope = entity.scope
    ids = {key: getattr(scope, key) for key in ("inferenceService", "model", "dataset")}
    evaluation = core.store.get(scope.evaluation) if scope.evaluation else None
    if evaluation is not None:  # an evaluation's system is its session's service
        session = evaluation.doc.get("inferenceSession") or {}
        reference = evaluation.doc.get("inferenceSessionReference")
        if not session and reference and (found := core.store.get(reference)) is not None:
            session = found.doc
        ids["inferenceService"] = ids["inferenceService"] or session.get("inferenceService")
        ids["dataset"] = ids["dataset"] or evaluation.doc.get("dataset")
    for key, id in ids.items():
        if isinstance(id, str) and id:
            names[f"{key}Id"] = id
            record = core.store.get(id)
            if record is not None and record.doc.get("name"):
                names[f"{key}Name"] = record.doc["name"]
    return names


def _read_json(path: Path, what: str) -> Any:
    """A JSON file the analysis process wrote (None if missing): a regular file only, never
    a link it made to something of the platform's."""
    try:
        data = sandbox.read_regular(path)
        return None if data is None else json.loads(data)
    except ValueError as exc:
        raise errors.WorkflowFailedError(
            f"{what}: the analysis process left an unreadable {path.name} ({exc})"
        ) from None


def _run_process(
    ctx: WorkflowContext, config_path: Path, work: Path, config: dict[str, Any]
) -> tuple[int, str | None]:
    """Run the analysis process; its exit status, and the sandbox limit it was killed for
    (None: none)."""
    policy = ctx.platform.policy
    log_path = work / "logs.txt"
    process: launcher.AnalysisProcess
    if policy.sandbox:
        sandbox.require(f"{ctx.entity.kind} {ctx.entity.id}")
        inputs = [Path(f) for i in config["inputs"].values() for f in i["files"]]
        job = sandbox.Job(
            read_only=[config_path, *map(Path, config["paths"]), *inputs],
            writable=[Path(config["work"])],
            env={"ASSAY_ANALYSIS_CONFIG": str(config_path)},
            cwd=Path(config["work"]),
            hide=[Path(ctx.storage.root)] if hasattr(ctx.storage, "root") else [],
            limits=policy.limits,
            env_allow=policy.env_allow,
        )
        process = launcher.start_sandboxed(config_path, log_path=log_path, job=job)
    else:
        env = dict(os.environ)
        env.pop("PYTHONSTARTUP", None)
        process = launcher.start(config_path, log_path=log_path, cwd=work, env=env)
    try:
        last_check = time.monotonic()
        while True:
            code = process.poll(POLL_INTERVAL)
            if code is not None:
                signalled = sandbox.exit_signal(code) if policy.sandbox and code > 0 else None
                if signalled is not None:  # bwrap says 128 + N for a job killed by signal N
                    code = -signalled
                return code, _limit_hit(policy, code, process)
            if time.monotonic() - last_check > 0.5:
                last_check = time.monotonic()
                ctx.check()
    except BaseException:
        process.kill()
        raise


def _limit_hit(policy: Any, code: int, process: Any) -> str | None:
    """Which sandbox limit killed the process, in words with the setting (None: none)."""
    if not policy.sandbox:
        return None
    limits = policy.limits
    if getattr(process, "exceeded_processes", False):
        return (
            f"it started more than {limits.processes} processes and threads, the sandbox's "
            "limit (server setting ASSAY_SANDBOX_PROCESSES)"
        )
    killed_by = sandbox.exit_signal(code)
    if killed_by == signal.SIGXCPU:
        return (
            f"it used more than {limits.cpu_seconds} s of CPU time, the sandbox's limit "
            "(server setting ASSAY_SANDBOX_CPU_SECONDS)"
        )
    if killed_by == signal.SIGXFSZ:
        return (
            f"it wrote a file larger than {limits.file_mb} MiB, the sandbox's limit (server "
            "setting ASSAY_SANDBOX_FILE_MB)"
        )
    return None


def _failure(
    entity: Any, work: Path, code: int, log_file: Path, killed_for: str | None = None
) -> tuple[str, str, Path | None]:
    """What went wrong; the failed entity's message (that, and where to find more); the
    partly executed notebook to store (or None)."""
    from assay.schema.platform import Resources

    group = Resources.for_kind(entity.kind).value
    log = f"its log ({group}.logs({entity.id!r}); assay {group} logs {entity.id})"
    error_file = work / "job" / ERROR_FILE
    error = _read_json(error_file, f"{entity.kind} {entity.id}")
    if isinstance(error, dict) and "message" in error:
        reason = str(error["message"])
        message = reason
        partial: Path | None = None
        written = dict(sandbox.regular_files(work / "job" / "output"))
        if error.get("notebook") and str(error["notebook"]) in written:
            partial = written[str(error["notebook"])]
        if error.get("traceback"):
            message += f"; the traceback is in {log}"
        if partial is not None:
            message += (
                f"; the notebook as far as it ran (outputs, the error) is its artifact "
                f"{NOTEBOOK_FILE}"
            )
        return reason, message, partial
    tail = ""
    if log_file.is_file():
        tail = log_file.read_bytes()[-_LOG_TAIL:].decode("utf-8", "replace").strip()
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    if killed_for:
        how = f"was killed: {killed_for}"
    reason = f"the analysis process {how}"
    message = reason + (f"; its log ends: {tail}" if tail else "") + f" (the whole log: {log})"
    return reason, message, None


# -- scores -------------------------------------------------------------------------------------


def build_scores(entity: Any, widgets: Sequence[Sequence[Any]]) -> tuple[list[Any], list[Any]]:
    """The Score and Curve records of a safety case from its widgets' payloads, each checked
    against the Method's spec (declared, published once, within minimum/maximum)."""
    from assay.analysis.widgets import MIME_CURVE, MIME_SCORE
    from assay.schema.platform import Curve, Score

    method = entity.method
    what = f"SafetyCase {entity.id}"
    specs = {s.name: s for s in method.score_specs()}
    curve_specs = {s.name: s for s in method.curve_specs()}
    scope = entity.scope
    refs = {
        "method": method.id,
        "dataset": scope.dataset,
        "evaluation": scope.evaluation,
        "inferenceService": scope.inferenceService,
        "model": scope.model,
    }
    metadata = {"refs": {k: v for k, v in refs.items() if v}}
    scores: list[Any] = []
    curves: list[Any] = []
    seen: set[str] = set()
    for mime, payload in widgets:
        if mime not in (MIME_SCORE, MIME_CURVE):
            continue
        name = str(payload.get("name"))
        is_curve = mime == MIME_CURVE
        table: Mapping[str, Any] = curve_specs if is_curve else specs
        kind = "curve" if is_curve else "score"
        if name not in table:
            raise errors.ValidationError(
                f"{what}: the notebook published the {kind} {name!r}, which the Method does not "
                f"declare; its {kind}s are {sorted(table) or 'none'}",
                field="scores",
                value=name,
            )
        if name in seen:
            raise errors.ValidationError(
                f"{what}: the notebook published the {kind} {name!r} more than once; publish "
                "each once",
                field="scores",
                value=name,
            )
        seen.add(name)
        spec = table[name]
        base = {**spec.model_dump(by_alias=True, exclude_none=True), "analysis": entity.id}
        base["metadata"] = metadata
        if is_curve:
            points = payload.get("points") or {}
            for dimension, values in points.items():
                dim = spec.dimensions.get(dimension)
                if dim is not None:
                    for value in values:
                        _check_range(what, f"{name}.{dimension}", dim, value)
            curves.append(Curve.model_validate({**base, "points": points}))
        else:
            quantity = payload.get("quantity")
            _check_range(what, name, spec, quantity)
            body = {**base, "quantity": quantity, "text": str(payload.get("text", ""))}
            if payload.get("interval") is not None:
                body["interval"] = payload["interval"]
                body["confidence"] = payload.get("confidence")
            scores.append(Score.model_validate(body))
    return scores, curves


def _check_range(what: str, name: str, spec: Any, value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise errors.ValidationError(
            f"{what}: {name} is {value!r}; a score is a finite number",
            field="scores",
            value=name,
        )
    low, high = spec.minimum, spec.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        raise errors.ValidationError(
            f"{what}: {name} is {value}, outside its declared range "
            f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]",
            field="scores",
            value=name,
        )
