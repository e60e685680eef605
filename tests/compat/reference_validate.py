"""Validate answers of an Assay server with the reference schema package (``dyff-schema``),
strictly: ``Model.model_validate(answer)`` with the reference's own models, which refuse
unknown fields (``extra="forbid"``).

Run by ``test_reference_schema.py`` with the Python of the reference client's own virtual
environment (it cannot import Assay, and Assay's environment cannot import it)::

    python reference_validate.py <answers.json>

``answers.json`` is a list of ``{"what": ..., "model": ..., "many": bool, "json": ...}``:
``model`` names a class of ``dyff.schema.platform`` (or ``dyff.schema.responses``), ``many``
says that ``json`` is a list of such objects. Prints one JSON object: ``checked`` (how many
objects were validated) and ``failures``, one ``{"what", "model", "loc", "type", "msg"}`` per
broken rule.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pydantic
from dyff.schema import platform, responses


def _model(name: str) -> type[pydantic.BaseModel]:
    for module in (platform, responses):
        found = getattr(module, name, None)
        if isinstance(found, type) and issubclass(found, pydantic.BaseModel):
            return found
    raise SystemExit(f"no reference model named {name!r}")


def _check(what: str, model: type[pydantic.BaseModel], doc: Any) -> list[dict[str, Any]]:
    try:
        model.model_validate(doc)
    except pydantic.ValidationError as exc:
        return [
            {
                "what": what,
                "model": model.__name__,
                "loc": ".".join(str(part) for part in err.get("loc", ())),
                "type": err.get("type"),
                "msg": err.get("msg"),
            }
            for err in exc.errors(include_url=False)
        ]
    return []


def main() -> None:
    answers = json.loads(Path(sys.argv[1]).read_text())
    failures: list[dict[str, Any]] = []
    checked = 0
    for answer in answers:
        model = _model(answer["model"])
        docs = answer["json"] if answer.get("many") else [answer["json"]]
        if answer.get("many") and not isinstance(docs, list):
            failures.append(
                {
                    "what": answer["what"],
                    "model": model.__name__,
                    "loc": "",
                    "type": "list_type",
                    "msg": f"expected a list, got {type(docs).__name__}",
                }
            )
            continue
        for i, doc in enumerate(docs):
            what = f"{answer['what']}[{i}]" if answer.get("many") else answer["what"]
            failures.extend(_check(what, model, doc))
            checked += 1
    print(json.dumps({"checked": checked, "failures": failures}))


if __name__ == "__main__":
    main()
