"""Provenance: what every result was made from, as digests anyone can re-check.

Each Dataset, Evaluation, Measurement and SafetyCase records a *provenance block* when its
work ends: the sha256 of every file it produced (computed while the file was written — never
by reading the output again), of the inputs it used (each input's own recorded output digest),
of the system (the service's spec, its Modules' files, an http/openai service's URL and model)
and of the method (its spec and its Modules' files), the settings that can move a result
(replications, seeds, client settings, method arguments), Assay's version and the times.

Where it is kept:

- the whole block, with the digest of every file, in the entity's artifact
  :data:`BLOCK_FILE` (``.assay/provenance.json``: the platform's own name, which no user file
  may take);
- a summary (the digests, not the file lists) in the entity's annotation :data:`ANNOTATION`
  (``assay.io/provenance``), so that every reader of the entity — the reference client too, for
  which an annotation is an ordinary key and value — sees it.

:func:`verify` re-hashes the chain from an entity back to the data: each recorded file against
its bytes now, each input's digest against what that input recorded, each Module's files
against what the analysis saw, down to the Dataset. A changed byte anywhere is named: the
entity, the artifact, the digest recorded and the digest found.

Digests are ``sha256:<hex>``. The digest of a set of files is the sha256 of its manifest (one
``<path>\\t<sha256 hex>\\n`` line per file, sorted by path); the digest of a spec is the sha256
of its canonical JSON (sorted keys, no spaces).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from assay import __version__, errors

__all__ = [
    "ANNOTATION",
    "BLOCK_FILE",
    "VERSION",
    "Comparison",
    "Link",
    "Verification",
    "compare",
    "files_digest",
    "json_digest",
    "lineage",
    "read",
    "record",
    "summary",
    "verify",
]

#: The annotation holding an entity's provenance summary.
ANNOTATION = "assay.io/provenance"
#: The artifact holding an entity's whole provenance block.
BLOCK_FILE = ".assay/provenance.json"
#: The version of the block written now; :func:`read` refuses others, saying so.
VERSION = 1
#: Record provenance (and hash what is written). Switched off only by
#: ``bench/bench_provenance.py``, to measure what it costs.
ENABLED = True
_PRIVATE = ".assay/"
#: Fields of an entity that are the platform's bookkeeping, not what it does.
_VOLATILE = frozenset(
    {
        "id",
        "account",
        "status",
        "reason",
        "message",
        "creationTime",
        "lastTransitionTime",
        "labels",
        "annotations",
        "metadata",
        "schemaVersion",
        "documentation",
    }
)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sha256_hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def files_digest(files: Mapping[str, str]) -> str:
    """The digest of a set of files (path → hex sha256)."""
    hasher = hashlib.sha256()
    for path in sorted(files):
        hasher.update(f"{path}\t{sha256_hex(files[path])}\n".encode())
    return f"sha256:{hasher.hexdigest()}"


def json_digest(value: Any) -> str:
    """The digest of a JSON value, canonically serialised."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def spec_digest(doc: Mapping[str, Any]) -> str:
    """The digest of what an entity is (its spec), without the platform's bookkeeping."""
    return json_digest({k: v for k, v in doc.items() if k not in _VOLATILE})


# -- building blocks -------------------------------------------------------------------------


def output_files(storage: Any, id: str, written: Mapping[str, str | None]) -> dict[str, str]:
    """path → hex sha256 of every file of entity ``id`` outside ``.assay/``: the digests in
    ``written`` (taken while the files were written); a file without one there (written before
    a restart) is read once now."""
    files: dict[str, str] = {}
    for info in storage.list(id):
        if info.path.startswith(_PRIVATE):
            continue
        known = written.get(info.path)
        files[info.path] = known if known else storage.sha256(id, info.path)
    return files


def module_files(core: Any, module_id: str) -> dict[str, str]:
    """path → hex sha256 of a Module's files, as they are now (Modules are small); the
    bytecode Python caches beside them is not the Module's."""
    storage = core.storage
    return {
        info.path: storage.sha256(module_id, info.path)
        for info in storage.list(module_id)
        if not info.path.startswith(_PRIVATE)
        and "__pycache__/" not in f"/{info.path}"
        and not info.path.endswith(".pyc")
    }


def modules_block(core: Any, module_ids: Iterable[str]) -> dict[str, Any]:
    """Module id → {"digest", "files"} for each Module."""
    out: dict[str, Any] = {}
    for module_id in module_ids:
        files = module_files(core, module_id)
        out[module_id] = {"digest": files_digest(files), "files": files}
    return out


def system_block(
    core: Any, service: Any, *, versions: Mapping[str, list[str]] | None = None
) -> dict[str, Any]:
    """The system under test: its InferenceService's spec digest, its Modules' files, for a
    remote service the URL and model it answers for, and ``versions``: what the service said
    it is in its reply headers (``X-Model-Version`` and the like: header → distinct values)."""
    doc = service.to_wire() if hasattr(service, "to_wire") else dict(service)
    runner = doc.get("runner") or {}
    configuration = runner.get("configuration") or {}
    block: dict[str, Any] = {
        "inferenceService": doc.get("id"),
        "runner": runner.get("kind"),
        "spec": spec_digest(doc),
    }
    for key in ("url", "baseUrl", "model", "modelName"):
        if isinstance(configuration.get(key), str):
            block[key] = configuration[key]
    module_ids = [m for m in (configuration.get("modules") or []) if isinstance(m, str)]
    if isinstance(configuration.get("module"), str):
        module_ids.insert(0, configuration["module"])
    if module_ids:
        block["modules"] = modules_block(core, module_ids)
    if versions:
        block["versions"] = {header: list(values) for header, values in versions.items()}
    block["digest"] = json_digest(_without_files(block))
    return block


def method_block(core: Any, method: Any) -> dict[str, Any]:
    """The method: its spec digest and its Modules' files (code, notebooks)."""
    doc = method.to_wire() if hasattr(method, "to_wire") else dict(method)
    block: dict[str, Any] = {"id": doc.get("id"), "spec": spec_digest(doc)}
    module_ids = method.module_ids() if hasattr(method, "module_ids") else []
    if module_ids:
        block["modules"] = modules_block(core, module_ids)
    block["digest"] = json_digest(_without_files(block))
    return block


def input_link(core: Any, kind: str, id: str) -> dict[str, Any]:
    """An input entity and the output digest it recorded (None where it recorded none)."""
    recorded = read(core, id)
    digest = (recorded or {}).get("output", {}).get("digest")
    return {"kind": kind, "id": id, "digest": digest}


def make(
    kind: str,
    id: str,
    *,
    files: Mapping[str, str],
    started: str | None = None,
    **parts: Any,
) -> dict[str, Any]:
    """A block: the entity's output files and the parts given (inputs, system, method,
    settings)."""
    block: dict[str, Any] = {
        "version": VERSION,
        "kind": kind,
        "id": id,
        "assay": __version__,
        "output": {"digest": files_digest(files), "files": dict(sorted(files.items()))},
    }
    block.update({k: v for k, v in parts.items() if v is not None})
    block["times"] = {"started": started, "finished": now()} if started else {"finished": now()}
    return block


def _without_files(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_files(v) for k, v in value.items() if k != "files"}
    if isinstance(value, list):
        return [_without_files(v) for v in value]
    return value


def summary(block: Mapping[str, Any]) -> dict[str, Any]:
    """The block without file lists (what the annotation holds)."""
    out: dict[str, Any] = _without_files(dict(block))
    return out


# -- storing and reading -----------------------------------------------------------------------


def record(core: Any, id: str, block: Mapping[str, Any]) -> None:
    """Store ``block`` as entity ``id``'s provenance: the artifact and the annotation."""
    if not ENABLED:
        return
    core.storage.put_bytes(
        id, BLOCK_FILE, json.dumps(block, sort_keys=True, indent=1).encode() + b"\n"
    )
    value = json.dumps(summary(block), sort_keys=True, separators=(",", ":"))

    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        notes = [a for a in doc.get("annotations") or [] if a.get("key") != ANNOTATION]
        notes.append({"key": ANNOTATION, "value": value})
        doc["annotations"] = notes
        return doc

    core.store.update(id, mutate)


def read(core: Any, id: str) -> dict[str, Any] | None:
    """Entity ``id``'s whole provenance block; None where it recorded none. A block of a
    version this Assay does not know is refused, saying which."""
    if not core.storage.exists(id, BLOCK_FILE):
        return None
    try:
        block = json.loads(core.storage.read_bytes(id, BLOCK_FILE))
    except ValueError as exc:
        raise errors.DataIntegrityError(
            f"entity {id}: its provenance block {BLOCK_FILE} is not JSON ({exc}); it was "
            "damaged after it was written"
        ) from None
    return _checked(block, id)


def from_annotations(annotations: Iterable[Any], id: str = "?") -> dict[str, Any] | None:
    """The provenance summary among an entity's annotations (dicts or Annotation models)."""
    for note in annotations or ():
        key = note.get("key") if isinstance(note, dict) else getattr(note, "key", None)
        if key == ANNOTATION:
            value = note.get("value") if isinstance(note, dict) else note.value
            try:
                block = json.loads(str(value))
            except (TypeError, ValueError):
                raise errors.DataIntegrityError(
                    f"entity {id}: its {ANNOTATION} annotation is not JSON"
                ) from None
            return _checked(block, id)
    return None


def _checked(block: Any, id: str) -> dict[str, Any]:
    if not isinstance(block, dict):
        raise errors.DataIntegrityError(f"entity {id}: its provenance block is not an object")
    version = block.get("version")
    if version != VERSION:
        raise errors.ValidationError(
            f"entity {id}: its provenance block has version {version!r}, which this Assay "
            f"({__version__}) does not read (it reads version {VERSION}); read it with the "
            "Assay that wrote it, or upgrade",
            field="provenance.version",
            value=version,
            entity=id,
        )
    return block


# -- verification ------------------------------------------------------------------------------


@dataclass
class Link:
    """One checked link of the chain."""

    kind: str
    id: str
    what: str
    """``file`` (an artifact's bytes), ``output`` (the digest of the files), ``input`` (an
    input's digest as recorded by its user), ``module`` (a Module's files), ``integrity``
    (an Evaluation's exactly-once check), ``recorded`` (the entity has a provenance block at
    all)."""
    ok: bool
    artifact: str | None = None
    expected: str | None = None
    found: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.kind} {self.id}" + (f" {self.artifact!r}" if self.artifact else "")
        if self.ok:
            return f"ok        {self.what:<8} {where}"
        said = f": {self.detail}" if self.detail else ""
        digests = (
            f" (recorded {self.expected}, found {self.found})"
            if self.expected or self.found
            else ""
        )
        return f"MISMATCH  {self.what:<8} {where}{digests}{said}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != ""}


@dataclass
class Verification:
    """The result of :func:`verify`: every link checked, and whether all hold."""

    id: str
    links: list[Link] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(link.ok for link in self.links)

    @property
    def mismatches(self) -> list[Link]:
        return [link for link in self.links if not link.ok]

    def __str__(self) -> str:
        head = (
            f"{self.id}: verified, {len(self.links)} links hold"
            if self.ok
            else f"{self.id}: {len(self.mismatches)} of {len(self.links)} links do NOT hold"
        )
        return "\n".join([head, *(f"  {link}" for link in self.links)])

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ok": self.ok, "links": [link.to_dict() for link in self.links]}


def verify(core: Any, id: str) -> Verification:
    """Re-hash the chain from entity ``id`` back to its data (see the module docstring)."""
    result = Verification(id)
    seen: set[str] = set()
    _verify(core, id, result, seen)
    return result


def _verify(core: Any, id: str, result: Verification, seen: set[str]) -> None:
    if id in seen:
        return
    seen.add(id)
    record_ = core.store.require(id)
    kind = record_.doc.get("kind", "?")
    links = result.links
    try:
        block = read(core, id)
    except errors.AssayError as exc:
        links.append(Link(kind, id, "recorded", False, BLOCK_FILE, detail=str(exc)))
        return
    if block is None:
        links.append(
            Link(
                kind,
                id,
                "recorded",
                False,
                detail="no provenance recorded (made before this version of Assay, or its "
                "work has not ended)",
            )
        )
        return
    storage = core.storage
    files: dict[str, str] = dict(block.get("output", {}).get("files") or {})
    present = {i.path for i in storage.list(id) if not i.path.startswith(_PRIVATE)}
    for path in sorted(files):
        if path not in present:
            links.append(
                Link(kind, id, "file", False, path, files[path], None, "the artifact is gone")
            )
            continue
        found = storage.sha256(id, path)
        links.append(Link(kind, id, "file", found == files[path], path, files[path], found))
    for path in sorted(present - set(files)):
        links.append(
            Link(
                kind,
                id,
                "file",
                False,
                path,
                None,
                storage.sha256(id, path),
                "an artifact that was not there when the provenance was recorded",
            )
        )
    expected = block.get("output", {}).get("digest")
    computed = files_digest(files)
    links.append(
        Link(
            kind,
            id,
            "output",
            expected == computed,
            None,
            expected,
            computed,
            "" if expected == computed else "the file list of the block was changed",
        )
    )
    annotated = from_annotations(record_.doc.get("annotations") or [], id)
    if annotated is not None and annotated != summary(block):
        links.append(
            Link(
                kind,
                id,
                "recorded",
                False,
                BLOCK_FILE,
                detail="the block differs from the summary in the entity's annotation",
            )
        )
    if kind == "Evaluation":
        links.append(_integrity(record_.doc, id))
    for module_id, recorded in _modules(block):
        _verify_module(core, kind, id, module_id, recorded, links)
    for link in block.get("inputs") or []:
        input_id = link.get("id")
        if not input_id:
            continue
        exists = core.store.get(input_id) is not None
        try:
            current = read(core, input_id) if exists else None
        except errors.AssayError as exc:
            current, unreadable = None, str(exc)
        else:
            unreadable = "" if exists else "the input is gone (purged)"
        found = (current or {}).get("output", {}).get("digest")
        ok = found is not None and found == link.get("digest")
        detail = unreadable or f"the input {kind} {id} used is not what is recorded there now"
        links.append(
            Link(
                link.get("kind", "?"),
                input_id,
                "input",
                ok,
                None,
                link.get("digest"),
                found,
                "" if ok else detail,
            )
        )
        if core.store.get(input_id) is not None:
            _verify(core, input_id, result, seen)


#: The annotation of an Evaluation's integrity check (``assay.evaluation.integrity``).
_INTEGRITY = "assay.io/integrity"


def _integrity(doc: Mapping[str, Any], id: str) -> Link:
    """The evaluation's integrity check (every instance and replication answered exactly
    once), as it recorded it: one link of the chain."""
    for note in doc.get("annotations") or []:
        if note.get("key") == _INTEGRITY:
            try:
                counts = json.loads(note.get("value") or "")
            except ValueError:
                break
            ok = bool(counts.get("ok"))
            said = ", ".join(
                f"{counts.get(k, 0):,} {k}" for k in ("duplicates", "missing", "unexpected")
            )
            return Link("Evaluation", id, "integrity", ok, detail="" if ok else said)
    return Link("Evaluation", id, "integrity", False, detail="no integrity check recorded")


def _modules(block: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    found: list[tuple[str, Mapping[str, Any]]] = []
    for part in ("method", "system"):
        for module_id, recorded in ((block.get(part) or {}).get("modules") or {}).items():
            found.append((module_id, recorded))
    return found


def _verify_module(
    core: Any,
    kind: str,
    id: str,
    module_id: str,
    recorded: Mapping[str, Any],
    links: list[Link],
) -> None:
    files: Mapping[str, str] = recorded.get("files") or {}
    try:
        now_files = module_files(core, module_id)
    except errors.NotFoundError:
        now_files = {}
    for path in sorted(set(files) | set(now_files)):
        expected, found = files.get(path), now_files.get(path)
        if expected == found:
            continue
        detail = (
            "the Module's file is gone"
            if found is None
            else "a file the Module did not have"
            if expected is None
            else "the Module's file changed"
        )
        links.append(
            Link(
                "Module",
                module_id,
                "module",
                False,
                path,
                expected,
                found,
                f"{detail} (used by {kind} {id})",
            )
        )
    ok = files_digest(now_files) == recorded.get("digest")
    links.append(
        Link(
            "Module", module_id, "module", ok, None, recorded.get("digest"), files_digest(now_files)
        )
    )


# -- what a score stands on ----------------------------------------------------------------------


def lineage(core: Any, id: str) -> dict[str, Any] | None:
    """What entity ``id``'s result stands on, walking its recorded inputs: its own output
    digest, and the digest of every Dataset, Method and system of its chain (id → digest).
    None where ``id`` recorded no provenance."""
    top = read(core, id)
    if top is None:
        return None
    out: dict[str, Any] = {
        "analysis": id,
        "digest": top.get("output", {}).get("digest"),
        "datasets": {},
        "methods": {},
        "systems": {},
    }
    seen: set[str] = set()
    todo = [top]
    while todo:
        block = todo.pop()
        if block.get("id") in seen:
            continue
        seen.add(str(block.get("id")))
        if block.get("kind") == "Dataset":
            out["datasets"][block["id"]] = block.get("output", {}).get("digest")
        if block.get("method"):
            out["methods"][block["method"].get("id")] = block["method"].get("digest")
        if block.get("system"):
            system = block["system"]
            out["systems"][system.get("inferenceService")] = system.get("digest")
        for link in block.get("inputs") or []:
            if link.get("id") and link["id"] not in seen:
                try:
                    found = read(core, link["id"]) if core.store.get(link["id"]) else None
                except errors.AssayError:
                    found = None
                if found is not None:
                    todo.append(found)
    return out


@dataclass(frozen=True)
class Comparison:
    """Whether two scores can be compared as paired (:func:`compare`)."""

    paired: bool
    """Measured on identical data with identical methods: a paired comparison holds."""
    same_data: bool
    same_methods: bool
    why: str

    def __str__(self) -> str:
        return self.why


def compare(a: Any, b: Any) -> Comparison:
    """Whether scores ``a`` and ``b`` (from ``scores.query``, which fills in their
    ``provenance``) were measured on identical data (the same Dataset digests) with identical
    methods (the same Method digests, code included): only then is a comparison of them
    paired. Says why not, naming what differs."""
    pa, pb = getattr(a, "provenance", None), getattr(b, "provenance", None)
    if not pa or not pb:
        return Comparison(
            False,
            False,
            False,
            "not paired: a score has no provenance (made before this version of Assay); "
            "nothing says its data and method are the other's",
        )
    data_a, data_b = set(pa["datasets"].values()), set(pb["datasets"].values())
    methods_a = {d for d in pa["methods"].values()}
    methods_b = {d for d in pb["methods"].values()}
    same_data = bool(data_a) and data_a == data_b
    same_methods = bool(methods_a) and methods_a == methods_b
    if same_data and same_methods:
        return Comparison(True, True, True, "paired: identical data and identical methods")
    reasons = []
    if not same_data:
        reasons.append(
            f"the data differ (Datasets {sorted(pa['datasets'])} vs {sorted(pb['datasets'])}, "
            "digests differ)"
        )
    if not same_methods:
        reasons.append("the methods differ (their specs or code)")
    return Comparison(False, same_data, same_methods, "not paired: " + "; ".join(reasons))
