"""Validations: small, safe boolean expressions over a pipeline's flattened record, evaluated
vectorised with ``pyarrow.compute``.

The language (parsed with :mod:`ast` on a restricted grammar, never evaluated by Python):

- column references: dotted names such as ``out.score``, ``in.text``, ``out_challenger.label``
  (``in`` and other keywords are fine before or after a dot);
- literals: numbers, strings, ``True``/``False``/``None`` (also ``TRUE``/``FALSE``/``NULL``);
- comparisons ``== != < <= > >=`` (``=`` is read as ``==``), chained or not, and
  ``x is None`` / ``x is not None``;
- ``and``, ``or``, ``not`` (also upper case), with SQL's three-valued logic;
- arithmetic ``+ - * /`` (``/`` is true division) and unary ``-``.

Anything else (calls, subscripts, attribute access on a non-name, lambdas, ...) is refused
with an error naming the check. A check is true where an anomaly is flagged; a null result
(a null in a column it reads) is neither true nor false, and is not counted in
``anomaly.count``.

A check may also be a polars expression (``pl.col("out.score") > 0.9``, with polars
installed: ``pip install polars``), evaluated by polars over the batch; it is stored as
polars' JSON serialisation of the expression (``{"polars": ..., "polarsVersion": ...}``).
Design notes: ``docs/design/pipelines.md``.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from assay import errors

__all__ = ["Check", "evaluate_checks", "parse_check"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MANGLE = "__kw_"
_UPPER = {"AND": "and", "OR": "or", "NOT": "not", "TRUE": "True", "FALSE": "False", "NULL": "None"}
_COMPARE: dict[type[ast.cmpop], Any] = {
    ast.Eq: pc.equal,
    ast.NotEq: pc.not_equal,
    ast.Lt: pc.less,
    ast.LtE: pc.less_equal,
    ast.Gt: pc.greater,
    ast.GtE: pc.greater_equal,
}
_ARITHMETIC: dict[type[ast.operator], Any] = {
    ast.Add: pc.add,
    ast.Sub: pc.subtract,
    ast.Mult: pc.multiply,
}


@dataclass(frozen=True)
class Check:
    """A parsed validation: an expression of the language (``tree``) or a polars expression
    (``polars``)."""

    name: str
    source: str
    """The expression as written (a polars expression's text), for messages."""
    tree: ast.expr | None
    columns: frozenset[str]
    polars: Any = None
    """The polars expression, for a polars check."""
    stored: Any = None
    """What a version stores: the source text, or the polars expression serialised."""


def _is_polars_expr(value: Any) -> bool:
    return type(value).__module__.startswith("polars") and hasattr(value, "meta")


def _polars_check(name: str, source: Any) -> Check:
    """A polars check from an expression, or from its stored form."""
    try:
        import polars as pl
    except ImportError:
        raise errors.ValidationError(
            f"validation {name!r} is a polars expression, and polars is not installed: "
            "pip install polars",
            field=f"validations.{name}",
        ) from None
    if isinstance(source, dict):
        try:
            expr = pl.Expr.deserialize(io.StringIO(str(source["polars"])), format="json")
        except Exception as exc:  # another polars version may not read it back
            raise errors.ValidationError(
                f"validation {name!r}: the stored polars expression (written by polars "
                f"{source.get('polarsVersion', '?')}) cannot be read by polars {pl.__version__}: "
                f"{exc}; replace the validation with replace_with_validations",
                field=f"validations.{name}",
            ) from None
    else:
        expr = source
    try:
        columns = frozenset(expr.meta.root_names())
        stored = {"polars": expr.meta.serialize(format="json"), "polarsVersion": pl.__version__}
    except Exception as exc:
        raise errors.ValidationError(
            f"validation {name!r}: the polars expression {expr} cannot be stored: {exc}",
            field=f"validations.{name}",
        ) from None
    return Check(
        name=name, source=str(expr), tree=None, columns=columns, polars=expr, stored=stored
    )


def parse_check(name: Any, source: Any) -> Check:
    """Parse validation ``name`` (the language's text, a polars expression, or a stored
    polars expression); ValidationError naming it when it is not valid."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise errors.ValidationError(
            f"validation name {name!r} is not an identifier; use letters, digits and '_'",
            field="validations",
            value=name,
        )
    if name == "count":
        raise errors.ValidationError(
            "a validation cannot be named 'count': anomaly.count holds the number of checks "
            "that flagged each record; choose another name",
            field="validations",
            value=name,
        )
    if _is_polars_expr(source) or (isinstance(source, dict) and "polars" in source):
        return _polars_check(name, source)
    if not isinstance(source, str) or not source.strip():
        raise errors.ValidationError(
            f"validation {name!r} must be a non-empty expression string, got {source!r}, "
            "e.g. \"out.score > 0.9 and in.text != ''\"",
            field=f"validations.{name}",
            value=source,
        )
    try:
        tree = ast.parse(_rewrite(source), mode="eval").body
    except (SyntaxError, tokenize.TokenError, IndentationError) as exc:
        raise _refused(
            name, source, f"it does not parse ({exc.msg if isinstance(exc, SyntaxError) else exc})"
        ) from None
    columns: set[str] = set()
    _check_node(name, source, tree, columns)
    return Check(name=name, source=source, tree=tree, columns=frozenset(columns), stored=source)


def _rewrite(source: str) -> str:
    """Rename keywords next to a dot (``in.text``) and upper-case SQL words, token by token."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source.strip()).readline))
    out: list[tuple[int, str]] = []
    for i, tok in enumerate(tokens):
        text = tok.string
        if tok.type == tokenize.NAME:
            before = tokens[i - 1].string if i > 0 else ""
            after = tokens[i + 1].string if i + 1 < len(tokens) else ""
            if keyword.iskeyword(text) and "." in (before, after):
                text = _MANGLE + text
            elif text in _UPPER and "." not in (before, after):
                text = _UPPER[text]
        elif tok.type == tokenize.OP and text == "=":
            text = "=="
        out.append((tok.type, text))
    return tokenize.untokenize(out)


def _refused(name: str, source: str, why: str) -> errors.ValidationError:
    return errors.ValidationError(
        f"validation {name!r} ({source!r}) is refused: {why}. Write a boolean expression of "
        "dotted column names (out.score, in.text), literals, comparisons, and/or/not and "
        "+ - * /, e.g. \"out.score > 0.9 and in.text != ''\"",
        field=f"validations.{name}",
        value=source,
    )


def column_name(node: ast.expr) -> str | None:
    """The column a Name/Attribute chain refers to, or None if ``node`` is not one."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(p.removeprefix(_MANGLE) for p in reversed(parts))


def _check_node(name: str, source: str, node: ast.expr, columns: set[str]) -> None:
    match node:
        case ast.Name() | ast.Attribute():
            column = column_name(node)
            if column is None:
                raise _refused(name, source, "attribute access is allowed on column names only")
            columns.add(column)
        case ast.Constant(value=value):
            if not (value is None or isinstance(value, bool | int | float | str)):
                raise _refused(name, source, f"the literal {value!r} is not allowed")
        case ast.BoolOp(values=operands):
            for operand in operands:
                _check_node(name, source, operand, columns)
        case ast.UnaryOp(op=ast.Not() | ast.USub() | ast.UAdd(), operand=operand):
            _check_node(name, source, operand, columns)
        case ast.BinOp(op=ast.Add() | ast.Sub() | ast.Mult() | ast.Div(), left=left, right=right):
            _check_node(name, source, left, columns)
            _check_node(name, source, right, columns)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            for op, right in zip(ops, comparators, strict=True):
                if isinstance(op, ast.Is | ast.IsNot):
                    if not (isinstance(right, ast.Constant) and right.value is None):
                        raise _refused(name, source, "'is' and 'is not' compare with None only")
                elif type(op) not in _COMPARE:
                    raise _refused(name, source, f"the operator {type(op).__name__} is not allowed")
            _check_node(name, source, left, columns)
            for right in comparators:
                _check_node(name, source, right, columns)
        case _:
            raise _refused(name, source, f"{type(node).__name__} expressions are not allowed")


def evaluate_checks(
    checks: Collection[Check], table: pa.Table, *, nullable: Collection[str] = ()
) -> dict[str, pa.Array]:
    """``anomaly.count`` and ``anomaly.<name>`` for every row of ``table``.

    A column a check reads that ``table`` lacks is refused (ValidationError naming the check
    and listing the columns), unless it is in ``nullable`` (a column a service declares but
    that this batch happens not to hold): then it reads as nulls.
    """
    results: dict[str, pa.Array] = {}
    count = pa.array([0] * table.num_rows, pa.int64())
    frame: Any = None  # the batch as a polars DataFrame, made once for the polars checks
    for check in checks:
        missing = sorted(
            c for c in check.columns if c not in table.column_names and c not in nullable
        )
        if missing:
            available = ", ".join(c for c in table.column_names if c.startswith(("in.", "out")))
            raise errors.ValidationError(
                f"validation {check.name!r} ({check.source!r}) refers to unknown column(s) "
                f"{', '.join(missing)}; the columns are: {available}",
                field=f"validations.{check.name}",
                value=check.source,
            )
        try:
            if check.polars is not None:
                if frame is None:
                    frame = _frame(table, [c for c in nullable if c not in table.column_names])
                value = _evaluate_polars(check, frame)
            else:
                assert check.tree is not None
                value = _evaluate(check.tree, table)
            if not isinstance(value, pa.Array | pa.ChunkedArray):
                value = pa.array([value.as_py()] * table.num_rows)
            if isinstance(value, pa.ChunkedArray):
                value = value.combine_chunks()
            if pa.types.is_null(value.type):
                value = value.cast(pa.bool_())
        except (
            pa.ArrowInvalid,
            pa.ArrowNotImplementedError,
            pa.ArrowTypeError,
            _PolarsError,
        ) as exc:
            raise errors.ValidationError(
                f"validation {check.name!r} ({check.source!r}) cannot be evaluated on these "
                f"records: {exc}",
                field=f"validations.{check.name}",
                value=check.source,
            ) from None
        if not pa.types.is_boolean(value.type):
            raise errors.ValidationError(
                f"validation {check.name!r} ({check.source!r}) gives {value.type} values, not "
                "booleans; write a comparison, e.g. 'out.score > 0.9'",
                field=f"validations.{check.name}",
                value=check.source,
            )
        results[f"anomaly.{check.name}"] = value
        count = pc.add(count, pc.if_else(pc.fill_null(value, False), 1, 0))
    return {"anomaly.count": count, **results}


class _PolarsError(Exception):
    """Polars could not evaluate a check (its own exception, wrapped)."""


def _frame(table: pa.Table, missing: list[str]) -> Any:
    import polars as pl

    for column in missing:  # declared columns this batch lacks read as nulls
        table = table.append_column(column, pa.nulls(table.num_rows))
    return pl.from_arrow(table)


def _evaluate_polars(check: Check, frame: Any) -> Any:
    try:
        series = frame.select(check.polars.alias("__check__")).to_series()
    except Exception as exc:  # polars' errors share no base class we can name cheaply
        raise _PolarsError(f"{type(exc).__name__}: {exc}") from None
    value = series.to_arrow()
    if len(value) == 1 and frame.height != 1:  # a constant: one value for every row
        value = pa.array([value[0].as_py()] * frame.height, value.type)
    return value


def _evaluate(node: ast.expr, table: pa.Table) -> Any:
    match node:
        case ast.Name() | ast.Attribute():
            column = column_name(node)
            assert column is not None  # checked by parse_check
            if column in table.column_names:
                return table.column(column)
            return pa.nulls(table.num_rows)
        case ast.Constant(value=value):
            return pa.scalar(value)
        case ast.BoolOp(op=boolop, values=operands):
            combine = pc.and_kleene if isinstance(boolop, ast.And) else pc.or_kleene
            combined = _boolean(_evaluate(operands[0], table))
            for operand in operands[1:]:
                combined = combine(combined, _boolean(_evaluate(operand, table)))
            return combined
        case ast.UnaryOp(op=unaryop, operand=operand):
            value = _evaluate(operand, table)
            if isinstance(unaryop, ast.Not):
                return pc.invert(_boolean(value))
            return pc.negate(value) if isinstance(unaryop, ast.USub) else value
        case ast.BinOp(op=binop, left=left, right=right):
            a, b = _evaluate(left, table), _evaluate(right, table)
            if isinstance(binop, ast.Div):
                return pc.divide(_float(a), _float(b))
            return _ARITHMETIC[type(binop)](a, b)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            result: Any = None
            a = _evaluate(left, table)
            for cmpop, right in zip(ops, comparators, strict=True):
                if isinstance(cmpop, ast.Is | ast.IsNot):
                    part = pc.is_null(a) if isinstance(cmpop, ast.Is) else pc.is_valid(a)
                    b = None
                else:
                    b = _evaluate(right, table)
                    part = _COMPARE[type(cmpop)](a, b)
                result = part if result is None else pc.and_kleene(result, part)
                a = b
            return result
    raise AssertionError(f"unchecked node {node!r}")  # pragma: no cover - parse_check refuses it


def _boolean(value: Any) -> Any:
    if pa.types.is_null(value.type):
        return value.cast(pa.bool_())
    return value


def _float(value: Any) -> Any:
    return value.cast(pa.float64()) if pa.types.is_integer(value.type) else value
