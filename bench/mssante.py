"""MSSanté sending: N signed orders sent to the partner pharmacy through a real SMTP submission
server (aiosmtpd, STARTTLS, client certificate, SASL EXTERNAL) that drops a share of the
connections after DATA (the message is stored, the 250 never arrives).

    python -m bench.mssante [--count 1000] [--drop 0.1] [--seed 7]

Goal: each order received exactly once, or its duplicates recognisable by the same
Message-ID. Anchor, in the same run: a bare smtplib loop sending the same messages over the
same kind of TLS session to a server that drops nothing (one session, no store, no
documents to build). Prints JSON only.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import smtplib
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

from bench.common import ROOT, emit, machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--drop", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)  # aiosmtpd's own chatter
    from appliance.bootstrap import bootstrap
    from appliance.config import load_settings
    from appliance.domain.people import Role
    from appliance.domain.prescription import Prescription
    from appliance.services.mailbox import order_documents
    from appliance.services.signature import record_signature, sign_prescription
    from drivers.card import pki
    from sync import mssante
    from tests import factories, mailservers
    from tests.cda_orders import doliprane, kardegic, new_id
    from tests.harness.workers import physician_session

    work = Path(tempfile.mkdtemp(prefix="ordo-bench-mss-"))
    mail_root = Path(tempfile.mkdtemp(prefix="ordo-bench-mail-"))
    pharmacy = "pharmacie-bench@ordo-test.mssante.invalid"
    rng = random.Random(args.seed)  # fault injection, not a secret
    paths = pki.init_pki(work / "pki")
    m = paths.mssante
    faulty = mailservers.SmtpSubmission(mail_root / "faulty", m / "server.pem", m / "server.key",
                                        m / "ca.pem", drop=lambda n: rng.random() < args.drop)
    bare = mailservers.SmtpSubmission(mail_root / "bare", m / "server.pem", m / "server.key",
                                      m / "ca.pem")
    faulty.start()
    bare.start()
    try:
        env = {**paths.environment(), "ORDO_MSSANTE_SMTP_HOST": "127.0.0.1",
               "ORDO_MSSANTE_SMTP_PORT": str(faulty.port), "ORDO_PHARMACY_MSSANTE": pharmacy,
               "ORDO_ESTABLISHMENT_NAME": "EHPAD Bench", "ORDO_ESTABLISHMENT_FINESS": "750000001"}
        app = bootstrap(load_settings(data_dir=work / "data", environ=env))
        session = physician_session(paths.directory)
        doctor = session.practitioner.as_practitioner(Role.PRESCRIBER, am="751234567")
        resident = factories.resident(1)
        uow = app.uow
        with uow:
            uow.residents.upsert([resident])
            uow.practitioners.upsert(doctor)
            uow.commit()
        t0 = time.monotonic()
        start = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
        for n in range(args.count):
            at = start + timedelta(seconds=n)
            p = Prescription(id=new_id(n), prescriber=doctor, resident=resident, created_at=at,
                             lines=(doliprane(), kardegic()))
            signed = sign_prescription(p, session.signer, at)
            with uow:  # as the signing use case does, with the root's mail policy
                record_signature(uow, signed, actor="bench", mail=app.mail_policy)
                uow.commit()
        signing_s = time.monotonic() - t0

        sender = app.mail_sender(backoff_base_s=0.0)
        t0 = time.monotonic()
        runs = 0
        while uow.mail_outbox.pending_count() and runs < 1000:
            sender.drain()
            runs += 1
        ordo_s = time.monotonic() - t0
        received = faulty.messages(pharmacy)
        counts: dict[str, int] = {}
        for raw in received:
            mid = str(message_from_bytes(raw, policy=policy.default)["Message-ID"])
            counts[mid] = counts.get(mid, 0) + 1
        expected = {mssante.message_id(new_id(n), pki.TEST_MAILBOX) for n in range(args.count)}

        # the anchor: the same messages, composed beforehand, one bare TLS session
        mailer = app.order_mailer()
        messages = []
        for n in range(args.count):
            docs = order_documents(uow, mailer, new_id(n))
            messages.append(mailer.compose(docs, pharmacy, mailer.message_id(new_id(n))))
        context = mssante.tls_context(app.settings.mssante)
        t0 = time.monotonic()
        smtp = smtplib.SMTP("127.0.0.1", bare.port, timeout=30)
        smtp.starttls(context=context)
        smtp.ehlo()
        smtp.auth("EXTERNAL", lambda challenge=None: "", initial_response_ok=False)
        for msg in messages:
            smtp.send_message(msg)
        smtp.quit()
        bare_s = time.monotonic() - t0
    finally:
        faulty.stop()
        bare.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(mail_root, ignore_errors=True)
    duplicates = sum(c - 1 for c in counts.values())
    emit({
        "benchmark": "mssante",
        "count": args.count, "drop_rate": args.drop, "seed": args.seed,
        "dropped_connections": faulty.dropped,
        "received_messages": len(received),
        "distinct_message_ids": len(counts),
        "every_order_received": set(counts) == expected,
        "received_exactly_once": sum(1 for c in counts.values() if c == 1),
        "received_twice_or_more_same_message_id": sum(1 for c in counts.values() if c > 1),
        "duplicate_copies": duplicates,
        "unknown_message_ids": len(set(counts) - expected),
        "drain_runs": runs,
        "ordo_seconds": round(ordo_s, 2),
        "ordo_per_s": round(args.count / ordo_s, 1),
        "signing_seconds": round(signing_s, 2),
        "anchor": "bare smtplib, same messages prebuilt, one TLS session, no faults",
        "anchor_seconds": round(bare_s, 2),
        "ratio_anchor_over_ordo": round(bare_s / ordo_s, 3),
        "goal_met": set(counts) == expected and len(set(counts) - expected) == 0,
        "machine": machine(),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
