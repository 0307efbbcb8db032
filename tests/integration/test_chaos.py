"""Registry chaos: 5,000 signed prescriptions drained into the reference registry
while it answers 500/503, resets connections, loses acknowledgements after committing,
throttles and lags (``tests.harness.chaos``): exactly 5,000 held, each created once, all
acknowledged locally with the registry's own receipts. The drain time is printed, never
asserted."""

from __future__ import annotations

import json
import time

import pytest

from tests.harness import chaos

pytestmark = pytest.mark.integration

COUNT = 5000
SEED = 7


@pytest.mark.timeout(600)
def test_5000_prescriptions_through_a_failing_registry_are_held_exactly_once(
        tmp_path, card_pki, registry_sim):
    started = time.monotonic()
    report = chaos.run(tmp_path, card_pki, registry_sim, count=COUNT, seed=SEED)
    report["test_seconds"] = round(time.monotonic() - started, 1)
    print("\nregistry chaos:", json.dumps(report, indent=1))

    assert report["problems"] == []
    assert report["held"] == report["acknowledged"] == report["created_once"] == COUNT
    injected = report["injected"]
    assert injected["ok"] == COUNT  # each prescription got one answered success, then no more
    # every lost answer was made good by a resend that got the original receipt back
    assert report["replayed"] >= injected["drop"] > 0
    push = report["push"]
    assert push["acknowledged"] == COUNT and push["quarantined"] == 0
    assert push["sent"] == report["registry_requests"]
