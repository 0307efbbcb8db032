"""Shared pieces of the fuzz suite (``tests/unit/test_fuzz_*.py``): the settings profile,
strategies for garbage and near-valid input, and the one assertion every fuzz test makes.

Every parser of outside input must either return a result or raise an ``OrdoError`` with a
message; anything else (``KeyError``, ``TypeError``, ``RecursionError``...) is a bug. The
strategies mix pure garbage with mutations of valid documents (a key dropped or added, a
value of the wrong type, a huge number, NaN, deep nesting, odd Unicode), because garbage alone
rarely gets past a parser's first check.

Runs are deterministic (``derandomize=True``, no example database) so that CI sees the same
examples every time; ``max_examples`` is set per test so that the whole suite stays within
about a minute on a loaded 2-core machine. This file also tests its own mutators.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from appliance.errors import OrdoError

__all__ = [
    "FUZZ",
    "JSON_SPECIALS",
    "ODD_CHARS",
    "flip_bytes",
    "json_values",
    "line_soup",
    "mutated",
    "odd_text",
    "outcome",
]

# Deterministic, no deadline (the machine is loaded), no database files in the tree.
FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])

# Characters that break naive parsers: NUL, BOM, bidi and zero-width marks, Unicode line
# separators, the ASCII separators the QR and GS1 formats use, digits that ``str.isdigit``
# accepts but ``int`` refuses (superscripts) or accepts (Arabic-Indic), case-mapping traps
# (ß → SS, ﬁ → FI, İ → i̇), combining marks, a lone surrogate (``surrogateescape``).
ODD_CHARS = ("\x00", "\ufeff", "\u202e", "\u200b", "\u2028", "\u2029", "\x85", "\r", "\r\n",
             "\n", "\t", "\x0b", "\x0c", "\x1d", "\x1f", "\x7f", "\u00b2", "\u00b9", "\u0663",
             "\U0001d7d8", "\u00df", "\ufb01", "\u0130", "\u00a0", "\u3000", "e\u0301",
             "\U0001f642", "\udcff", "\u00b5", "\u03bc", "\ufffd", ";", ",", '"', "'", "\\",
             "%", "-", "+", ".", "/", ":", "[", "{", "<GS>")

# JSON scalars that sit on the edges of what a parser expects.
JSON_SPECIALS = (None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**30, 10**400,
                 0.5, -0.0, 1e308, float("inf"), float("-inf"), float("nan"), "", " ", "0",
                 "-1", "1e999999999", "1e-999999999", "NaN", "sNaN", "Infinity", "-0",
                 "\u00b2", "\u0663", "\x00", "\ufeff", "true", "null", "[]", "{}")


@functools.cache
def odd_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text of any characters, with the odd ones above over-represented."""
    return st.lists(st.characters() | st.sampled_from(ODD_CHARS), max_size=max_size).map(
        "".join)


@functools.cache
def json_scalars() -> st.SearchStrategy[Any]:
    return (st.sampled_from(JSON_SPECIALS) | st.none() | st.booleans()
            | st.integers() | st.floats() | odd_text(20))


@functools.cache
def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON-like value (string keys), including NaN, infinities and huge integers."""
    return st.recursive(json_scalars(), lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(odd_text(8), inner, max_size=4),
                        max_leaves=max_leaves)


def _mutate_leaf(node: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    actions = ["replace", "special", "wrap_list", "wrap_dict", "nest_deep"]
    if isinstance(node, dict):
        actions += ["add_key", "empty"] + (["drop_key"] if node else [])
    if isinstance(node, list):
        actions += ["empty", "append"] + (["drop_item", "duplicate"] if node else [])
    if isinstance(node, str):
        actions += ["truncate", "insert_odd", "swap_case", "to_number"]
    if isinstance(node, int | float) and not isinstance(node, bool):
        actions += ["to_string", "negate", "scale"]
    action = draw(st.sampled_from(actions))
    if action == "replace":
        return draw(json_values(6))
    if action == "special":
        return draw(st.sampled_from(JSON_SPECIALS))
    if action == "wrap_list":
        return [node]
    if action == "wrap_dict":
        return {draw(odd_text(6)): node}
    if action == "nest_deep":
        depth = draw(st.integers(2, 60))
        for _ in range(depth):
            node = [node]
        return node
    if action == "add_key":
        node[draw(odd_text(10))] = draw(json_values(4))
        return node
    if action == "drop_key":
        del node[draw(st.sampled_from(sorted(node)))]
        return node
    if action == "empty":
        return type(node)()
    if action == "append":
        node.append(draw(json_values(4)))
        return node
    if action == "drop_item":
        del node[draw(st.integers(0, len(node) - 1))]
        return node
    if action == "duplicate":
        return node + node
    if action == "truncate":
        return node[: draw(st.integers(0, max(len(node) - 1, 0)))]
    if action == "insert_odd":
        pos = draw(st.integers(0, len(node)))
        return node[:pos] + draw(st.sampled_from(ODD_CHARS)) + node[pos:]
    if action == "swap_case":
        return node.swapcase()
    if action == "to_number":
        return draw(st.integers() | st.floats())
    if action == "to_string":
        return str(node)
    if action == "negate":
        return -node
    if isinstance(node, float):  # scale
        return node * draw(st.sampled_from([1e6, 1e300]))
    return node * draw(st.sampled_from([10**6, 10**30]))


def _mutate(node: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    """Walk down a random path of the document, then mutate the node found there."""
    if isinstance(node, dict) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node)))
        node[key] = _mutate(node[key], draw)
        return node
    if isinstance(node, list) and node and draw(st.booleans()):
        index = draw(st.integers(0, len(node) - 1))
        node[index] = _mutate(node[index], draw)
        return node
    return _mutate_leaf(node, draw)


def mutated(valid: Any, max_mutations: int = 3) -> st.SearchStrategy[Any]:
    """``valid`` (a JSON-like document) with 1 to ``max_mutations`` random mutations."""

    @st.composite
    def strategy(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
        doc = copy.deepcopy(valid)
        for _ in range(draw(st.integers(1, max_mutations))):
            doc = _mutate(doc, draw)
        return doc

    return strategy()


def flip_bytes(valid: bytes, max_flips: int = 4) -> st.SearchStrategy[bytes]:
    """``valid`` with a few bytes changed, inserted or removed, or truncated."""

    @st.composite
    def strategy(draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, max_flips))):
            pos = draw(st.integers(0, max(len(data) - 1, 0)))
            action = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
            if action == "flip" and data:
                data[pos] ^= 1 << draw(st.integers(0, 7))
            elif action == "set" and data:
                data[pos] = draw(st.integers(0, 255))
            elif action == "insert":
                data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
            elif action == "delete":
                del data[pos:pos + draw(st.integers(1, 8))]
            else:
                del data[pos:]
        return bytes(data)

    return strategy()


def line_soup(valid_lines: list[str], max_lines: int = 8) -> st.SearchStrategy[list[str]]:
    """Lines of a text file: valid ones, mutated ones (truncated, a field dropped or
    doubled, odd characters) and junk, in any order."""

    @st.composite
    def strategy(draw: Callable[[st.SearchStrategy[Any]], Any]) -> list[str]:
        out = []
        for _ in range(draw(st.integers(0, max_lines))):
            line = draw(st.sampled_from(valid_lines))
            kind = draw(st.sampled_from(["valid", "mutated", "mutated", "junk"]))
            if kind == "mutated":
                line = draw(mutated(line, 3))
                line = line if isinstance(line, str) else str(line)
            elif kind == "junk":
                line = draw(odd_text(60))
            out.append(line)
        return out

    return strategy()


def outcome(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a parser: return its result, or the ``OrdoError`` it raised (checked to carry a
    message). Any other exception propagates and fails the test."""
    try:
        return func(*args, **kwargs)
    except OrdoError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return exc


# -- the mutators themselves ---------------------------------------------------------------
FIRST_FOUND = settings(FUZZ, phases=[Phase.generate], max_examples=500)
VALID = {"a": [1, "x", {"b": None}], "c": "text"}


@settings(FUZZ, max_examples=40)
@given(mutated(VALID))
def test_mutations_never_touch_the_original(doc):
    assert VALID == {"a": [1, "x", {"b": None}], "c": "text"}
    assert doc is not VALID


def test_mutations_reach_nested_nodes():
    def nested_changed(doc: Any) -> bool:
        return (isinstance(doc, dict) and doc.get("c") == "text"
                and isinstance(doc.get("a"), list) and len(doc["a"]) == 3
                and doc["a"][:2] == [1, "x"] and doc["a"][2] != {"b": None})

    assert nested_changed(find(mutated(VALID, 1), nested_changed, settings=FIRST_FOUND))


def test_byte_flips_can_truncate_and_grow():
    assert len(find(flip_bytes(b"0123456789"), lambda d: len(d) < 10, settings=FIRST_FOUND)) < 10
    assert len(find(flip_bytes(b"0123456789"), lambda d: len(d) > 10, settings=FIRST_FOUND)) > 10


def test_outcome_lets_foreign_exceptions_through():
    def broken() -> None:
        raise KeyError("x")

    try:
        outcome(broken)
    except KeyError:
        pass
    else:
        raise AssertionError("a KeyError must not be swallowed")


def test_outcome_returns_project_errors():
    def refuses() -> None:
        raise OrdoError("refused")

    assert isinstance(outcome(refuses), OrdoError)
