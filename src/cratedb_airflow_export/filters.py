"""A table's ``filter``: one side-effect-free boolean condition that cannot leave its parentheses.

The filter is ANDed to the time window inside parentheses (``... AND (<filter>)``). A filter that
could close those parentheses, or change how the statement is read, would export rows of other
days and could still look complete. So it is checked on the tokens of CrateDB's own lexer (from
``cratedb-sqlparse``), not on characters, and anything a filter does not need is refused,
especially what PostgreSQL and CrateDB read differently:

- comments, ``;``, bind parameters (``$1``, ``?``);
- string forms other than plain ``'...'``: escape strings ``E'...'``, Unicode escapes ``U&'...'``,
  dollar quoting ``$$...$$``, bit strings ``B'...'`` and any other prefixed literal (``X'..'``,
  ``N'..'``), and backslashes inside strings (their meaning depends on server settings);
- subqueries and statements (``SELECT``, ``WITH``, ``UNION``, ``INSERT`` ...);
- calls of functions outside :data:`ALLOWED_CALLS` (pure functions only: ``nextval('seq')`` has a
  side effect on every row it is evaluated for);
- qualified names (``t.col``): the row count also evaluates the filter over a subquery.

Parentheses and brackets must balance on tokens, and the result must parse as one condition in
CrateDB's grammar. Independently of this check, the export's ``count(*)`` applies the filter over a
subquery that holds the window, and the ``stream`` engine checks every batch's timestamps, so even a
filter that got through would make the export fail instead of publishing rows of other days.
"""

from __future__ import annotations

import functools
from typing import Any

from cratedb_airflow_export.errors import FilterError

SYNTAX_BEFORE_PARENTHESES = frozenset(
    {
        *("and", "or", "not", "in", "any", "all", "some", "like", "ilike", "between", "is", "distinct", "from"),
        *("when", "then", "else", "array", "cast", "try_cast", "extract"),
    }
)
PURE_FUNCTIONS = frozenset(
    {
        *("lower", "upper", "length", "char_length", "octet_length", "substr", "substring", "left", "right"),
        *("trim", "ltrim", "rtrim", "btrim", "replace", "concat", "concat_ws", "lpad", "rpad", "split_part"),
        *("strpos", "position", "starts_with", "regexp_replace", "md5", "coalesce", "nullif", "greatest"),
        *("least", "abs", "ceil", "ceiling", "floor", "round", "trunc", "mod", "sign", "sqrt", "power"),
        *("date_trunc", "date_bin", "date_format", "timezone", "array_length", "array_upper", "array_lower"),
        *("cardinality", "array_position", "array_to_string", "to_char"),
    }
)
ALLOWED_CALLS = SYNTAX_BEFORE_PARENTHESES | PURE_FUNCTIONS
REFUSED_TOKENS = {  # token -> what it is, for the message "<what> is not allowed in a filter"
    "ESCAPED_STRING": "an escape string (E'...')",
    "BEGIN_DOLLAR_QUOTED_STRING": "dollar quoting ($$...$$)",
    "DOLLAR_QUOTED_STRING_BODY": "dollar quoting ($$...$$)",
    "END_DOLLAR_QUOTED_STRING": "dollar quoting ($$...$$)",
    "BIT_STRING": "a bit string (B'...')",
    "DOLLAR": "a bind parameter ($1)",
    "QUESTION": "a bind parameter (?)",
    "BITWISE_AND": "'&' (it starts Unicode escape strings, U&'...')",
    "DOT": "a qualified name (t.column; name the column alone)",
    "UNRECOGNIZED": "an unterminated quote or a character CrateDB's SQL does not know",
}
REFUSED_KEYWORDS = frozenset(
    {
        *("SELECT", "WITH", "UNION", "INTERSECT", "EXCEPT", "VALUES", "EXISTS", "LATERAL", "TABLE"),
        *("INSERT", "UPDATE", "DELETE", "INTO", "COPY", "CREATE", "DROP", "ALTER", "GRANT", "REVOKE", "DENY"),
        *("SET", "RESET", "KILL", "REFRESH", "OPTIMIZE", "DECLARE", "FETCH", "CLOSE", "BEGIN", "COMMIT", "START"),
        *("EXPLAIN", "ANALYZE", "SHOW", "DISCARD", "DEALLOCATE", "PREPARE", "EXECUTE", "CALL"),
    }
)
OPENING = {"OPEN_ROUND_BRACKET": "CLOSE_ROUND_BRACKET", "OPEN_SQUARE_BRACKET": "CLOSE_SQUARE_BRACKET"}


def check_filter(condition: str) -> None:
    """Refuse a filter that is not one plain boolean condition (see the module docstring)."""
    if not condition.strip():
        raise FilterError("filter is empty; leave it out to export every row of the day")
    tokens = _tokens(condition)
    _check_tokens(condition, tokens)
    _check_balance(condition, tokens)
    from cratedb_sqlparse import sqlparse

    parsed = sqlparse(f"SELECT * FROM t WHERE ({condition})", raise_exception=False)
    if len(parsed) != 1 or parsed[0].exception is not None:
        reason = parsed[0].exception if parsed and parsed[0].exception else "not one condition"
        raise FilterError(f"filter {condition!r} does not parse as a CrateDB condition: {reason}")


class _Token:
    __slots__ = ("channel", "kind", "start", "stop", "text")

    def __init__(self, kind: str, text: str, start: int, stop: int, channel: int) -> None:
        self.kind, self.text, self.start, self.stop, self.channel = kind, text, start, stop, channel


@functools.cache
def _lexer_class() -> Any:
    import cratedb_sqlparse.parser  # noqa: F401  # installs the lexer actions for dollar quoting
    from cratedb_sqlparse.generated_parser.SqlBaseLexer import SqlBaseLexer

    return SqlBaseLexer


def _tokens(condition: str) -> list[_Token]:
    from antlr4 import CommonTokenStream, InputStream
    from antlr4.error.ErrorListener import ErrorListener

    lexer_class = _lexer_class()
    problems: list[str] = []

    class Collect(ErrorListener):  # type: ignore[misc]
        def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int, msg: str, e: Any) -> None:
            problems.append(f"column {column + 1}: {msg}")

    lexer = lexer_class(InputStream(condition))
    lexer.tags = []  # the dollar-quote tag stack, per lexer (the class-level list is shared)
    lexer.removeErrorListeners()
    lexer.addErrorListener(Collect())
    stream = CommonTokenStream(lexer)
    stream.fill()
    if problems:
        raise FilterError(
            f"filter {condition!r} has unbalanced quotes or text CrateDB's SQL does not know ({problems[0]})"
        )
    names = lexer_class.symbolicNames
    return [
        _Token(names[t.type] if 0 < t.type < len(names) else str(t.type), t.text, t.start, t.stop, t.channel)
        for t in stream.tokens
        if t.type != -1  # end of input
    ]


def _check_tokens(condition: str, tokens: list[_Token]) -> None:
    visible = [t for t in tokens if t.channel == 0]
    for token in tokens:
        if token.kind == "COMMENT":
            raise FilterError("filter must not contain SQL comments")
    for index, token in enumerate(visible):
        if token.kind == "SEMICOLON":
            raise FilterError("filter must be one SQL condition; ';' is not allowed")
        what = REFUSED_TOKENS.get(token.kind)
        if token.kind in REFUSED_KEYWORDS:
            what = f"a subquery or statement ({token.text})"
        elif token.kind == "STRING" and "\\" in token.text:
            what = "a backslash in a string (its meaning depends on server settings)"
        previous = visible[index - 1] if index else None
        if not what and token.kind == "STRING" and previous is not None and previous.stop + 1 == token.start:
            if previous.text.isidentifier():
                what = f"a prefixed string literal ({previous.text}'...')"
        following = visible[index + 1] if index + 1 < len(visible) else None
        if not what and following is not None and following.kind == "OPEN_ROUND_BRACKET" and _is_word(token):
            if token.text.startswith('"') or token.text.lower() not in ALLOWED_CALLS:
                what = f"the function {token.text}(...) (allowed: {', '.join(sorted(PURE_FUNCTIONS))})"
        if what:
            raise FilterError(f"filter {condition!r}: {what} is not allowed in a filter (at {token.text!r})")


def _is_word(token: _Token) -> bool:
    return token.kind == "QUOTED_IDENTIFIER" or (token.text.replace("_", "a").isalnum() and not token.text.isdigit())


def _check_balance(condition: str, tokens: list[_Token]) -> None:
    """Parentheses and brackets balance, counted on tokens (a ')' inside a string is no parenthesis)."""
    expected: list[str] = []
    for token in tokens:
        if token.kind in OPENING:
            expected.append(OPENING[token.kind])
        elif token.kind in OPENING.values():
            if not expected or expected.pop() != token.kind:
                raise FilterError(f"filter {condition!r} has unbalanced parentheses, brackets or quotes")
    if expected:
        raise FilterError(f"filter {condition!r} has unbalanced parentheses, brackets or quotes")
