"""The resident file's list lines, made from history rows for every prescription when the
file opens: the same text as the reference wording (``strftime`` of the Paris time, the first
two groups of ``format_id``), daylight-saving changes and flags included."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from appliance.domain.prescription import STATE_LABELS_FR, State, local
from appliance.domain.prescription_id import PrescriptionIdGenerator, format_id
from appliance.ports.uow import HistoryRow
from appliance.tui.context import DispensationView
from appliance.tui.screens.resident import RxView

MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                       timezones=st.just(UTC))


def _id(moment: datetime, random: bytes) -> str:
    return PrescriptionIdGenerator(lambda: int(moment.timestamp() * 1000),
                                   lambda n: random[:n]).new()


def _reference(view: RxView, extra: str = "") -> str:
    h = view.row_data
    return (f"{local(h.signed_at or h.created_at):%d/%m/%y %H:%M}  {format_id(h.id)[:9]}  "
            f"{STATE_LABELS_FR[h.state]:<22}{extra}")


@given(created=MOMENTS, signed_after=st.none() | st.timedeltas(timedelta(0), timedelta(days=3)),
       state=st.sampled_from(State), random=st.binary(min_size=9, max_size=9))
def test_a_line_reads_as_the_reference_wording(created, signed_after, state, random):
    signed = None if signed_after is None else created + signed_after
    view = RxView(HistoryRow(_id(created, random), state, created, signed, "810001234002"))
    assert view.row() == _reference(view)


def test_the_line_shows_the_paris_time_of_the_signature_across_the_clock_change():
    created = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)          # 01:30 in Paris (CET)
    signed = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)           # 03:30 in Paris (CEST)
    pid = _id(created, bytes(9))
    view = RxView(HistoryRow(pid, State.SIGNED, created, signed, "810001234002"))
    assert view.row().startswith(f"29/03/26 03:30  {pid[:4]} {pid[4:8]}  signée ")
    view = RxView(HistoryRow(pid, State.DRAFT, created, None, "810001234002"))
    assert view.row().startswith("29/03/26 01:30 ")


def test_the_line_flags_a_refused_record_before_a_substitution():
    created = datetime(2009, 1, 2, 23, 5, tzinfo=UTC)
    row = HistoryRow(_id(created, bytes(9)), State.REGISTERED, created, created, "810001234002")
    substituted = DispensationView("générique", substituted=True, complete=True)
    view = RxView(row, dispensations=[substituted])
    assert view.row() == _reference(view, " ! substitution")
    assert view.row().startswith("03/01/09 00:05 ")
    view.registry = "quarantined"
    assert view.row() == _reference(view, " ! registre")
