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
That form can carry pickled Python functions (``map_elements``, ``map_batches``) and plugin
libraries, which run code when polars reads it back, so a serialised expression is read only
once :func:`safe_polars_json` has checked it against a small grammar of plain expressions
(columns, literals, operators, casts, when/then/otherwise, polars' own functions), whoever
sent it; anything else is refused, naming the accepted forms. Design notes:
``docs/design/pipelines.md``.
"""

from __future__ import annotations

import ast
import io
import json
import keyword
import re
import tokenize
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from assay import errors

__all__ = ["Check", "evaluate_checks", "parse_check", "safe_polars_json"]

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
        checked = safe_polars_json(name, source.get("polars"))
        try:
            expr = pl.Expr.deserialize(io.StringIO(checked), format="json")
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
    safe_polars_json(name, stored["polars"])  # what could not be read back is refused now
    return Check(
        name=name, source=str(expr), tree=None, columns=columns, polars=expr, stored=stored
    )


#: Polars' binary operators (``Operator``) that a stored check may use.
_POLARS_OPERATORS = frozenset(
    {
        "Eq",
        "EqValidity",
        "NotEq",
        "NotEqValidity",
        "Lt",
        "LtEq",
        "Gt",
        "GtEq",
        "Plus",
        "Minus",
        "Multiply",
        "Divide",
        "TrueDivide",
        "FloorDivide",
        "Modulus",
        "And",
        "Or",
        "Xor",
        "LogicalAnd",
        "LogicalOr",
    }
)
#: Families of polars' built-in functions with parameters that a stored check may use (a
#: function without parameters is a bare name, e.g. ``"Abs"``, and carries nothing else).
_POLARS_FUNCTIONS = frozenset({"Boolean", "StringExpr", "TemporalExpr", "Round", "Pow"})
_POLARS_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
#: The deepest expression tree a stored check may be.
_POLARS_DEPTH = 64


class _Unsafe(Exception):
    """A serialised polars expression outside the grammar :func:`safe_polars_json` reads."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Unsafe("an object has the same key twice")
    return dict(pairs)


def _one(node: Any, what: str) -> tuple[str, Any]:
    if not isinstance(node, dict) or len(node) != 1:
        raise _Unsafe(f"{what} is not an object with one key: {json.dumps(node)[:80]}")
    ((key, value),) = node.items()
    return key, value


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _flat(value: Any) -> bool:
    """An object of plain values (a function's parameters)."""
    return isinstance(value, dict) and all(_plain(v) for v in value.values())


def _fields(value: Any, names: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != names:
        raise _Unsafe(f"{what} must have exactly the fields {sorted(names)}")
    return value


def _polars_node(node: Any, depth: int) -> None:
    """Refuse (``_Unsafe``) anything but the grammar of plain expressions."""
    if depth > _POLARS_DEPTH:
        raise _Unsafe(f"it is nested deeper than {_POLARS_DEPTH} levels")
    kind, value = _one(node, "an expression")
    if kind == "Column":
        if not isinstance(value, str):
            raise _Unsafe("a Column is not a name")
    elif kind == "Literal":
        form, inner = _one(value, "a Literal")
        dtype, scalar = _one(inner, "a Literal's value")
        if form not in ("Dyn", "Scalar") or not _POLARS_NAME.match(dtype) or not _plain(scalar):
            raise _Unsafe(
                f"the literal {json.dumps(value)[:80]} is not a number, string, boolean or null"
            )
    elif kind == "BinaryExpr":
        fields = _fields(value, {"left", "op", "right"}, "BinaryExpr")
        if fields["op"] not in _POLARS_OPERATORS:
            raise _Unsafe(f"the operator {fields['op']!r} is not allowed")
        _polars_node(fields["left"], depth + 1)
        _polars_node(fields["right"], depth + 1)
    elif kind == "Ternary":
        fields = _fields(value, {"predicate", "truthy", "falsy"}, "Ternary")
        for part in fields.values():
            _polars_node(part, depth + 1)
    elif kind == "Alias":
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)):
            raise _Unsafe("an Alias is not [expression, name]")
        _polars_node(value[0], depth + 1)
    elif kind == "Cast":
        fields = _fields(value, {"expr", "dtype", "options"}, "Cast")
        dtype, name = _one(fields["dtype"], "a Cast's dtype")
        if (
            dtype != "Literal"
            or not isinstance(name, str)
            or not isinstance(fields["options"], str)
        ):
            raise _Unsafe("a Cast may name a plain data type only (Int64, Float64, String...)")
        _polars_node(fields["expr"], depth + 1)
    elif kind == "Function":
        fields = _fields(value, {"input", "function"}, "Function")
        _polars_function(fields["function"])
        if not isinstance(fields["input"], list):
            raise _Unsafe("a Function's input is not a list")
        for part in fields["input"]:
            _polars_node(part, depth + 1)
    else:
        raise _Unsafe(
            f"{kind!r} expressions are not allowed (e.g. map_elements, map_batches and "
            "other Python functions, windows, aggregations)"
        )


def _polars_function(function: Any) -> None:
    if isinstance(function, str) and _POLARS_NAME.match(function):
        return  # a built-in function without parameters
    family, variant = _one(function, "a Function's function")
    if family not in _POLARS_FUNCTIONS:
        raise _Unsafe(f"the function {family!r} is not allowed (plugins and Python functions)")
    if (isinstance(variant, str) and _POLARS_NAME.match(variant)) or _flat(variant):
        return  # a function of the family without parameters, or the family's parameters
    name, parameters = _one(variant, f"a {family} function")
    if not _POLARS_NAME.match(name) or not (_plain(parameters) or _flat(parameters)):
        raise _Unsafe(f"the parameters of the {family} function {name!r} are not plain values")


def safe_polars_json(name: str, text: Any) -> str:
    """``text``, a serialised polars expression, rewritten canonically once it is known to hold
    nothing that runs code when polars reads it: only columns, number/string/boolean/null
    literals, binary operators, ``when/then/otherwise``, aliases, casts to plain types and
    polars' built-in functions with plain parameters. ValidationError naming the validation
    and the accepted forms otherwise (pickled Python functions, plugins, Series literals)."""
    try:
        if not isinstance(text, str):
            raise _Unsafe("it is not a JSON string")
        tree = json.loads(text, object_pairs_hook=_no_duplicates)
        _polars_node(tree, 0)
    except (_Unsafe, ValueError, RecursionError) as exc:
        raise errors.ValidationError(
            f"validation {name!r}: the serialised polars expression is refused ({exc}). "
            "Polars' serialised form can carry pickled Python functions and plugin libraries, "
            "which run code when it is read, so only plain expressions are accepted: columns, "
            "number/string/boolean/null literals, comparisons, arithmetic, & | ~, "
            "when/then/otherwise, casts and polars' built-in functions (no map_elements, "
            "map_batches or plugins, no list or Series literals). Write the check in Assay's "
            "expression language instead (e.g. \"out.score > 0.9 and in.text != ''\") or as "
            "such a polars expression",
            field=f"validations.{name}",
        ) from None
    return json.dumps(tree)


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
