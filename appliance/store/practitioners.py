"""Owner of the ``practitioners`` table (card holders seen at login, or added by hand),
with what their orders print that the card does not carry (qualification, phone, e-mail:
migration m006)."""

from __future__ import annotations

import sqlite3

from appliance.domain.people import Practitioner, Role
from appliance.ports.clock import iso, utc_now
from appliance.store.db import Store


def _practitioner(row: sqlite3.Row) -> Practitioner:
    return Practitioner(id_nat_ps=row["id_nat_ps"], last_name=row["last_name"],
                        first_name=row["first_name"], profession=row["profession"],
                        role=Role(row["role"]), am=row["am"], finess=row["finess"],
                        qualification=row["qualification"], phone=row["phone"],
                        email=row["email"])


class PractitionersTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, id_nat_ps: str) -> Practitioner | None:
        row = self._store.execute("SELECT * FROM practitioners WHERE id_nat_ps = ?",
                                  [id_nat_ps]).fetchone()
        return None if row is None else _practitioner(row)

    def all(self) -> list[Practitioner]:
        return [_practitioner(row) for row in self._store.execute(
            "SELECT * FROM practitioners ORDER BY last_name, first_name")]

    def upsert(self, p: Practitioner) -> None:
        self._store.require_write("practitioners")
        self._store.execute(
            "INSERT INTO practitioners (id_nat_ps, last_name, first_name, profession, role,"
            " am, finess, qualification, phone, email, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id_nat_ps) DO UPDATE SET last_name = excluded.last_name,"
            " first_name = excluded.first_name, profession = excluded.profession,"
            " role = excluded.role, am = excluded.am, finess = excluded.finess,"
            " qualification = excluded.qualification, phone = excluded.phone,"
            " email = excluded.email, updated_at = excluded.updated_at",
            [p.id_nat_ps, p.last_name, p.first_name, p.profession, p.role.value, p.am,
             p.finess, p.qualification, p.phone, p.email, iso(utc_now())])
