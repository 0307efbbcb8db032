"""The real-world drug query set is well formed: 50 distinct queries, each with CIS or
CIP13 codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import drug_queries


def test_the_query_set_has_fifty_distinct_queries_with_codes() -> None:
    queries = drug_queries.load()
    assert len(queries) >= 50
    assert len({q.text for q in queries}) == len(queries)
    assert all(q.expected and q.note for q in queries)


def test_a_malformed_query_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "queries.csv"
    path.write_text("# comment\nquery,expected\ndoliprane,123\n", "utf-8")
    with pytest.raises(ValueError, match="row 2"):
        drug_queries.load(path)
    path.write_text("text,codes\ndoliprane,60234100\n", "utf-8")
    with pytest.raises(ValueError, match="first row"):
        drug_queries.load(path)
