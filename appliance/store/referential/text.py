"""Search keys: the accent-, case- and punctuation-free form of names and queries.

The same function folds the referential's names when the index is built and the
user's text when it is searched, so ``PARACÉTAMOL``, ``paracetamol`` and ``Paracétamol``
meet; ``1,5 mg`` and ``1.5 mg`` both become ``1 5 mg``.
"""

from __future__ import annotations

import functools
import re

from appliance.domain.people import fold

# The ligatures that Unicode decomposition keeps as single letters, and the accented
# letters of French text already folded (``fold`` decomposes every character: slower).
_ACCENTED = "àâäáãåçéèêëíìîïñóòôöõúùûüýÿÀÂÄÁÃÅÇÉÈÊËÍÌÎÏÑÓÒÔÖÕÚÙÛÜÝ"
_FRENCH = str.maketrans({**{c: fold(c) for c in _ACCENTED}, "œ": "oe", "Œ": "oe",
                         "æ": "ae", "Æ": "ae"})
_NON_WORD = re.compile(r"[\W_]+")


@functools.lru_cache(maxsize=1 << 16)
def fold_french(text: str) -> str:
    """``people.fold`` of ``text`` with the ligatures spelt out: lower case, no accents.

    Cached: an import folds each name twice (its search key, its strengths and forms)."""
    folded = text.translate(_FRENCH)
    return folded.lower() if folded.isascii() else fold(folded)


@functools.lru_cache(maxsize=1 << 16)
def search_key(text: str) -> str:
    """Lower-case, accent-free words separated by single spaces.

    Cached: an import folds the same form, substance and laboratory names many times,
    and as-you-type queries repeat."""
    return " ".join(_NON_WORD.sub(" ", fold_french(text)).split())


def prefix_upper_bound(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
