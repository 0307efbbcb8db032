"""The prescribing use cases' rules that hold before any storage: roles, open sessions,
reasons; the ID allocator's bookkeeping; the referential as the draft parser sees it. (The
use cases on a unit of work: ``test_use_cases.py``.)"""

from dataclasses import dataclass, field

import pytest

from appliance.domain.people import Role
from appliance.domain.prescription_id import id_timestamp_ms
from appliance.errors import StoreError, ValidationError
from appliance.services import prescribing
from appliance.services.auth import AuthRefused
from appliance.services.prescribing import Forbidden, IdAllocator, ReferentialDrugs
from tests.factories import prescription
from tests.fakes import FakeUnitOfWork

PID = "01KAX5JDE0000G40R40M30EH"


@dataclass
class Holder:
    id_nat_ps: str = "899700000013"


@dataclass
class Session:
    role: Role
    locked: bool = False
    practitioner: Holder = field(default_factory=Holder)
    can_sign: bool = True

    def touch(self) -> None:
        if self.locked:
            raise AuthRefused("locked")


NOBODY = None  # the store: every refusal below happens before it is touched


@pytest.mark.parametrize("role", [Role.NURSE, Role.STAFF])
def test_only_a_prescriber_writes_signs_or_cancels(role):
    session = Session(role)
    with pytest.raises(Forbidden, match="ne permet pas de rédiger"):
        prescribing.new_draft(NOBODY, session, "x", ids=IdAllocator())
    with pytest.raises(Forbidden, match="ne permet pas de signer"):
        prescribing.sign(NOBODY, session, PID)
    with pytest.raises(Forbidden, match="ne permet pas d'annuler"):
        prescribing.cancel(NOBODY, session, PID, "erreur")
    with pytest.raises(Forbidden):
        prescribing.update_draft(NOBODY, session, prescription(PID))
    with pytest.raises(Forbidden):
        prescribing.discard_draft(NOBODY, session, PID)


def test_a_locked_session_does_nothing():
    session = Session(Role.PRESCRIBER, locked=True)
    for call in (lambda: prescribing.new_draft(NOBODY, session, "x", ids=IdAllocator()),
                 lambda: prescribing.sign(NOBODY, session, PID),
                 lambda: prescribing.cancel(NOBODY, session, PID, "erreur"),
                 lambda: prescribing.reprint(NOBODY, Session(Role.NURSE, locked=True), PID)):
        with pytest.raises(AuthRefused) as refused:
            call()
        assert refused.value.reason == "locked"


def test_a_card_without_signature_key_cannot_sign():
    with pytest.raises(Forbidden, match="clé de signature"):
        prescribing.sign(NOBODY, Session(Role.PRESCRIBER, can_sign=False), PID)


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_cancelling_needs_a_reason(reason):
    with pytest.raises(ValidationError) as refused:
        prescribing.cancel(NOBODY, Session(Role.PRESCRIBER), PID, reason)
    assert refused.value.field == "motif"


def test_the_allocator_persists_its_last_timestamp_and_never_goes_back():
    uow = FakeUnitOfWork()
    with uow:
        first = IdAllocator(clock_ms=lambda: 2_000_000_000_000).new(uow)
        uow.commit()
    assert uow.meta.get(prescribing.ID_META_KEY) == "2000000000000"
    restarted = IdAllocator(clock_ms=lambda: 1_000_000_000_000)   # clock set back
    with uow:
        second, third = restarted.new(uow), restarted.new(uow)
        uow.commit()
    assert [id_timestamp_ms(i) for i in (first, second, third)] == [
        2_000_000_000_000, 2_000_000_000_001, 2_000_000_000_002]
    assert uow.meta.get(prescribing.ID_META_KEY) == "2000000000002"
    with pytest.raises(StoreError, match="write transaction"):
        IdAllocator().new(FakeUnitOfWork())


@dataclass
class Presentation:
    cis: str
    name: str


class Referential:
    def by_cip13(self, code):
        return Presentation("60234100", "DOLIPRANE 1000 mg, comprimé") \
            if code == "3400935955838" else None

    def by_cis(self, code):
        return [Presentation(code, "KARDEGIC 75 mg")] if code == "64755969" else []


def test_the_referential_as_the_draft_parser_sees_it():
    drugs = ReferentialDrugs(Referential())
    assert drugs.label_for_cip13("3400935955838") == ("60234100", "DOLIPRANE 1000 mg, comprimé")
    assert drugs.label_for_cip13("3400930000000") is None
    assert drugs.label_for_cis("64755969") == "KARDEGIC 75 mg"
    assert drugs.label_for_cis("60000000") is None


def test_set_contact_changes_only_the_fields_given_and_audits_their_names():
    from tests.factories import physician
    uow = FakeUnitOfWork()
    doctor = physician(qualification="Médecin généraliste", email="a@example.org")
    with uow:
        uow.practitioners.upsert(doctor)
        uow.commit()
    updated = prescribing.set_contact(uow, doctor.id_nat_ps, actor="admin",
                                      qualification="", phone="01 23 45 67 89")
    assert (updated.qualification, updated.phone, updated.email) == (
        None, "+33 1 23 45 67 89", "a@example.org")
    assert uow.practitioners.get(doctor.id_nat_ps) == updated
    entry = uow.audit.entries()[-1]
    assert (entry.action, entry.details) == (
        "practitioner.contact_set", {"fields": ["phone", "qualification"]})
