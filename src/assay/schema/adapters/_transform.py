"""``TransformJSON``: build each output object from a template filled in from the input."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from assay.schema.adapters._base import BaseAdapter, JSONObject, config_error
from assay.schema.adapters._expressions import TemplateCompiler

__all__ = ["TransformJSON"]


class TransformJSON(BaseAdapter):
    """Make one output object per input object from a template: the configuration.

    In the template:

    - objects and lists give the shape of the output;
    - a string starting with ``$`` is a JSONPath query against the input object and is replaced
      by its value; it must match exactly one value (a query for several values would be
      ambiguous: use ``$list`` below);
    - ``$$`` at the start of a string or of an object key stands for a literal ``$``
      (``"$$PATH"`` gives ``"$PATH"``); other keys starting with ``$`` are reserved;
    - any other value is a literal;
    - ``{"$compute": step}`` or ``{"$compute": [step, ...]}`` computes a value. The first step
      sees the input object, each later one the result of the step before. A step is one of
      ``{"$literal": value}`` (a constant, never a query), ``{"$scalar": "$.query"}`` (exactly
      one value), ``{"$list": "$.query"}`` (all matches, possibly none),
      ``{"$list": [step, ...]}`` (a list of value steps), or ``{"$func": name, ...params}``
      with the functions ``findall``, ``search`` (``group``, ``default``), ``split``
      (``maxsplit``), ``sub`` (``repl``, ``count``) from :mod:`re` (each with ``pattern`` and
      ``flags``), ``join`` (``separator``), ``list`` and ``reduce`` (combine with ``+``).

    For example, this configuration turns an OpenAI-style completion into the completion texts::

        {"text": {"$compute": {"$list": "$.choices[*].text"}}, "model": "$.model"}

    The template is compiled once, when the adapter is made; a bad query is an error then, not
    on the first item.
    """

    def __init__(self, configuration: Mapping[str, Any] | None = None) -> None:
        super().__init__(configuration)
        template = self.configuration
        if not template:
            raise config_error(
                self.kind, "", "the template must be a non-empty JSON object describing the output"
            )
        if "$compute" in template:
            raise config_error(
                self.kind,
                "$compute",
                "the top level of the template must describe an object; put $compute under a key",
            )
        self._transform = TemplateCompiler(self.kind).template(template)

    def __call__(self, stream: Iterable[JSONObject]) -> Iterator[JSONObject]:
        transform = self._transform
        for item in stream:
            yield transform(item)
