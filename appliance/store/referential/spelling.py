"""Spelling tolerance: the words of the referential, and the ones a typo was meant to be.

The vocabulary is every folded word of the names and substances (about 7,700 in the
BDPM), with the number of documents holding it, read once per referential file.

- ``corrections``: one typo per word of five letters or more (a letter missing, extra,
  wrong, or two letters swapped), found the way SQLite's spellfix1 does, by generating
  every variant at edit distance 1 and keeping those the vocabulary knows: a whole word
  for a finished word, the start of a word for the word being typed ("amoxicili" is on
  its way to "amoxicilline"). The candidates are checked by bisection in the sorted
  vocabulary, a few hundred look-ups.
- ``near``: for the "no result" hint, the closest words at edit distance 2 at most,
  found through shared trigrams then checked with a bounded edit distance.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator

MIN_TYPO_LENGTH = 5
MAX_CORRECTIONS = 6
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def edits1(word: str) -> Iterator[str]:
    """Every string at Damerau-Levenshtein distance 1 from ``word`` (with repeats)."""
    for i in range(len(word) + 1):
        head, tail = word[:i], word[i:]
        if tail:
            yield head + tail[1:]  # deletion
            if len(tail) > 1:
                yield head + tail[1] + tail[0] + tail[2:]  # transposition
            for c in ALPHABET:
                if c != tail[0]:
                    yield head + c + tail[1:]  # substitution
        for c in ALPHABET:
            yield head + c + tail  # insertion


def distance(a: str, b: str, bound: int) -> int:
    """Optimal string alignment distance of ``a`` and ``b``, or ``bound + 1`` if larger."""
    if abs(len(a) - len(b)) > bound:
        return bound + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if (i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]):
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > bound:
            return bound + 1
        previous2, previous = previous, current
    return previous[-1] if previous[-1] <= bound else bound + 1


def _trigrams(word: str) -> set[str]:
    padded = f"  {word} "
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


class Vocabulary:
    """The words of one referential file and their document counts."""

    def __init__(self, words: Iterable[tuple[str, int]]) -> None:
        self.docs = dict(words)
        self.words = sorted(self.docs)
        self._grams: dict[str, list[int]] | None = None

    def __len__(self) -> int:
        return len(self.words)

    def _prefixed(self, prefix: str) -> tuple[int, int]:
        """Index range of the words starting with ``prefix``."""
        low = bisect.bisect_left(self.words, prefix)
        high = bisect.bisect_left(self.words, prefix + "\U0010ffff", low)
        return low, high

    def starts_a_word(self, prefix: str) -> bool:
        low = bisect.bisect_left(self.words, prefix)
        return low < len(self.words) and self.words[low].startswith(prefix)

    def needs_correction(self, word: str, typing: bool) -> bool:
        """A word of five letters or more that the vocabulary does not know (as a whole
        word, or as the start of one for the word being typed)."""
        if len(word) < MIN_TYPO_LENGTH or not word.isalpha():
            return False
        return not (self.starts_a_word(word) if typing else word in self.docs)

    def corrections(self, word: str, typing: bool) -> list[str]:
        """Known words (or word starts, when ``typing``) at edit distance 1 of ``word``,
        most frequent first."""
        found: dict[str, int] = {}
        for candidate in set(edits1(word)):
            if len(candidate) < MIN_TYPO_LENGTH - 1:
                continue
            if typing:
                low, high = self._prefixed(candidate)
                if high > low:
                    found[candidate] = sum(self.docs[w] for w in self.words[low:high])
            elif candidate in self.docs:
                found[candidate] = self.docs[candidate]
        # A shorter start that another candidate extends adds nothing to the search.
        kept = [c for c in found if not any(o != c and o.startswith(c) for o in found)]
        if not kept:
            kept = list(found)
        return sorted(kept, key=lambda c: (-found[c], c))[:MAX_CORRECTIONS]

    def near(self, word: str, limit: int = 3, bound: int = 2) -> list[str]:
        """The known words closest to ``word`` (edit distance ``bound`` at most)."""
        if self._grams is None:
            grams: dict[str, list[int]] = {}
            for index, known in enumerate(self.words):
                for gram in _trigrams(known):
                    grams.setdefault(gram, []).append(index)
            self._grams = grams
        shared: Counter[int] = Counter()
        for gram in _trigrams(word):
            shared.update(self._grams.get(gram, ()))
        scored = []
        for index, _ in shared.most_common(200):
            known = self.words[index]
            if known == word or not known.isalpha():
                continue
            d = distance(word, known, bound)
            if d <= bound:
                scored.append((d, -self.docs[known], known))
        return [known for _, _, known in sorted(scored)[:limit]]
