"""The checks' test sets run end to end: drafts in the ``ordo prescribe`` format parsed by the
real draft parser, against a referential file imported from BDPM files, with residents and
their allergies read by the residents' importer (``tests.harness.safety_sets``).

- on the repository's BDPM fixture (always): a representative subset of both sets, covering
  every kind of danger;
- on the real 2022 extract (when ``../shared`` is there): all 200 ordinary prescriptions,
  none with an ``important`` or ``bloquant`` alert, and all 100 dangerous ones, each danger
  caught with the alert expected.
"""

from __future__ import annotations

from collections import Counter

import pytest

from appliance.errors import DraftInvalid
from tests.harness import safety_sets as sets

pytestmark = pytest.mark.integration
needs_real = pytest.mark.skipif(not sets.REAL_BDPM.is_dir(),
                                reason="no BDPM extract in ../shared/data/bdpm")


def _env(tmp_path_factory, bdpm_dir):
    today, _ = sets.load("ordinary")
    return sets.prepare(bdpm_dir, tmp_path_factory.mktemp("checks-data"), today)


@pytest.fixture(scope="module")
def fixture_env(tmp_path_factory):
    env = _env(tmp_path_factory, sets.FIXTURE_BDPM)
    yield env
    env.close()


@pytest.fixture(scope="module")
def real_env(tmp_path_factory):
    _, ordinary = sets.load("ordinary")
    _, dangerous = sets.load("dangerous")
    source = sets.real_subset(tmp_path_factory.mktemp("bdpm-subset"),
                              sets.cip13s(ordinary + dangerous))
    env = _env(tmp_path_factory, source)
    yield env
    env.close()


def _no_serious_alert(env, cases, today):
    found = {case["id"]: [f"{a.key}: {a.message}" for a in sets.serious(sets.run(env, case,
                                                                                   today))]
             for case in cases}
    return {case_id: alerts for case_id, alerts in found.items() if alerts}


def _missed(env, cases, today):
    missed = {}
    for case in cases:
        try:
            keys = {a.key for a in sets.run(env, case, today)}
        except DraftInvalid as exc:
            # refused before any check, naming the line (a legal limit of its drug, such as
            # a hypnotic's 28 days): stopped at the door, so caught
            assert all(p.path.startswith("$.lines[") for p in exc.problems), exc.problems
            continue
        absent = [key for key in case["expect"] if key not in keys]
        if absent:
            missed[case["id"]] = (case["title"], absent, sorted(keys))
    return missed


def test_the_sets_are_as_large_as_promised() -> None:
    _, ordinary = sets.load("ordinary")
    _, dangerous = sets.load("dangerous")
    assert len(ordinary) == 200 and len(dangerous) == 100
    kinds = Counter(case["danger"] for case in dangerous)
    assert set(kinds) == {"overdose", "duplicate", "allergy", "hospital_only", "over_long",
                          "pim"}
    on_fixture = Counter(case["danger"] for case in dangerous if case["fixture"])
    assert set(on_fixture) == set(kinds)  # the clean-clone subset covers every danger
    assert sum(case["fixture"] for case in ordinary) >= 30


def test_ordinary_prescriptions_on_the_fixture_raise_no_serious_alert(fixture_env) -> None:
    today, cases = sets.load("ordinary")
    assert _no_serious_alert(fixture_env, [c for c in cases if c["fixture"]], today) == {}


def test_dangers_on_the_fixture_are_all_caught(fixture_env) -> None:
    today, cases = sets.load("dangerous")
    assert _missed(fixture_env, [c for c in cases if c["fixture"]], today) == {}


@needs_real
def test_200_ordinary_prescriptions_raise_no_serious_alert(real_env) -> None:
    today, cases = sets.load("ordinary")
    assert _no_serious_alert(real_env, cases, today) == {}


@needs_real
def test_100_dangerous_prescriptions_are_all_caught(real_env) -> None:
    today, cases = sets.load("dangerous")
    assert _missed(real_env, cases, today) == {}
