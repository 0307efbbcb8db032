"""The kiosk's start: the lock screen comes first, the rest is loaded after it.

``build_context`` only builds closures; the card monitor, the referential, the store's
migrations and the trust store are made or loaded by ``ctx.warm_up`` once the first frame is
drawn. What the lock screen needs imports neither cryptography, sqlite-utils, httpx nor the
printer driver.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from appliance.bootstrap import bootstrap
from appliance.config import load_settings
from tests.integration.test_kiosk import (
    kiosk_bdpm,
    kiosk_env,
    run,
    screen_name,
    text_of,
    until,
    write_settings,
)

pytestmark = pytest.mark.integration
SHARED_FIXTURES = (kiosk_bdpm, kiosk_env)  # from test_kiosk, for pytest to find them

FIRST_FRAME_MODULES = ("appliance.cli", "appliance.commands.kiosk", "appliance.tui.app",
                       "appliance.tui.screens.lock", "appliance.tui.screens.pin",
                       "drivers.card.monitor", "appliance.store.referential.search")
NOT_BEFORE_FIRST_FRAME = ("cryptography", "sqlite_utils", "httpx", "escpos", "qrcode", "PIL",
                          "apscheduler", "sync.service", "appliance.services.auth")


def test_the_lock_screen_path_loads_none_of_the_heavy_libraries():
    code = (f"import sys\nimport {', '.join(FIRST_FRAME_MODULES)}\n"
            f"print(' '.join(m for m in {NOT_BEFORE_FIRST_FRAME!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == []


def test_build_context_opens_nothing_and_warm_up_migrates_and_loads_trust(
        card_data_dir, card_pki, emulators):
    toml = write_settings(card_data_dir, card_pki, emulators().uri)
    app = bootstrap(load_settings(config_file=toml, data_dir=card_data_dir, environ={}))
    from appliance.commands.kiosk import build_context

    ctx, parts = build_context(app, printer=False)
    try:
        # nothing opened or made before the first frame
        assert not app.settings.db_path.exists()
        assert ctx.watcher is None and ctx.referential is None
        ctx.warm_up(ctx)
        assert app.settings.db_path.exists()
        assert ctx.watcher is not None and ctx.referential is app.referential
        with ctx.uow() as uow:  # migrated: the tables are there
            assert uow.views.drafts() == [] and uow.outbox.pending_count() == 0
    finally:
        parts.close()
        app.close()


def test_an_unreadable_trust_store_is_shown_on_the_lock_screen_and_the_kiosk_runs(kiosk_env):
    from appliance.commands.kiosk import build_context
    from appliance.tui.app import make_app

    broken = kiosk_env.data_dir / "broken-root.pem"
    broken.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n")
    settings = kiosk_env.app.settings
    app_root = bootstrap(replace(settings, security=replace(settings.security,
                                                            trust_roots=(str(broken),))))
    ctx, parts = build_context(app_root, console=False)
    app = make_app(ctx)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: "Démarrage incomplet" in text_of(app, "#lock-reason"),
                        what="the start error on the lock screen")
            assert "security.trust_roots" in text_of(app, "#lock-reason")
            assert screen_name(app) == "LockScreen"
            # the rest of the kiosk started all the same: the status line is refreshed
            await until(pilot, lambda: "BDPM 03/06/2022" in app.status_line,
                        what="the status line")

    try:
        run(scenario())
    finally:
        parts.close()
        app_root.close()
