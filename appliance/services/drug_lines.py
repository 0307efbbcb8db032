"""How a presentation reads in a list of results: name, box size, reimbursement.

Pure functions over a presentation of the referential (``Presentation`` of
``appliance.store.referential.search``, read through the fields below, so that the kiosk
uses them without importing the store), for the kiosk's result list and
``ordo drugs search``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol


class Presentation(Protocol):
    """What a result line shows of a presentation."""

    @property
    def cis(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def pack(self) -> str: ...
    @property
    def box(self) -> str: ...
    @property
    def reimbursement_rates(self) -> tuple[int, ...]: ...
    @property
    def marketed(self) -> bool: ...


def reimbursement_text(presentation: Presentation) -> str:
    """"65 %", "65 % ; 100 %" or "non remboursé"."""
    return " ; ".join(f"{rate} %" for rate in presentation.reimbursement_rates) or \
        "non remboursé"


_ASIDE = re.compile(r"\s*\([^()]*\)")


def _shortened(text: str, width: int, keep_from: int = 0) -> str:
    """``text`` in ``width`` characters: without its remarks in brackets ("(rapport
    amoxicilline/acide clavulanique : 8/1)"), then cut at the end with "…", or, when
    ``keep_from`` is given, with "…" in the middle so that the characters from
    ``keep_from`` show."""
    if len(text) <= width:
        return text
    if not keep_from:
        text = _ASIDE.sub("", text)
        if len(text) <= width:
            return text
    if keep_from <= 0 or width < 12:
        return text[:width - 1] + "…"
    head = max(4, width // 3)
    tail = text[keep_from:]
    if len(tail) > width - head - 1:
        tail = tail[:width - head - 2] + "…"
    return text[:head] + "…" + tail


def _common_prefix(texts: Iterable[str]) -> int:
    first, *others = sorted(texts)
    last = others[-1] if others else first
    length = 0
    while length < min(len(first), len(last)) and first[length] == last[length]:
        length += 1
    return length


def result_lines(presentations: Sequence[Presentation], width: int) -> list[str]:
    """One line per presentation, at most ``width`` characters: name, box size and
    reimbursement ("DOLIPRANE 1000 mg, comprimé · 8 comprimés · 65 %").

    A name too long for the line is shortened, but never so that two different names
    look the same: those keep the part where they differ. Identical names (parallel
    imports of one specialty) end with their CIS."""
    names = [p.name or p.pack for p in presentations]
    tails = [" · ".join(part for part in (
        p.box, reimbursement_text(p), "" if p.marketed else "non commercialisé") if part)
        for p in presentations]

    def line(i: int, keep_from: int = 0, mark: str = "") -> str:
        tail = f" · {tails[i]}" if tails[i] else ""
        room = max(12, width - len(tail) - len(mark))
        return (_shortened(names[i], room, keep_from) + mark + tail)[:width]

    lines = [line(i) for i in range(len(presentations))]
    for shown in {text for text in lines if lines.count(text) > 1}:
        group = [i for i, text in enumerate(lines) if text == shown]
        keep_from = max(0, _common_prefix(names[i] for i in group) - 8)
        for i in group:
            twins = sum(names[j] == names[i] for j in group) > 1
            lines[i] = line(i, keep_from, f" (CIS {presentations[i].cis})" if twins else "")
    for shown in {text for text in lines if lines.count(text) > 1}:  # a narrow line:
        group = [i for i, text in enumerate(lines) if text == shown]  # the name only
        keep_from = max(0, _common_prefix(names[i] for i in group) - 8)
        for i in group:
            mark = f" (CIS {presentations[i].cis})"
            lines[i] = _shortened(names[i], width - len(mark), keep_from) + mark
    return lines
