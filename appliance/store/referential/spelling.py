"""Spelling tolerance: the words of the referential, and the ones a typo was meant to be.

The vocabulary is every folded word of the names and substances (about 7,700 in the
BDPM), with the number of documents holding it, read once per referential file.

- ``corrections``: one typo per word of five letters or more (a letter missing, extra,
  wrong, or two letters swapped), found the way SQLite's spellfix1 does, by generating
  every variant at edit distance 1 and keeping those that start a known word: the word
  may still be being typed ("amoxicili" is on its way to "amoxicilline"). The
  candidates (about 550 for ten letters) are looked up in a dictionary of every start
  of four letters or more of a known word (about 34,000 strings, made on first need).
- ``near``: for the "no result" hint, the closest words at edit distance 2 at most,
  found through shared trigrams then checked with a bounded edit distance.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator

MIN_TYPO_LENGTH = 5
MAX_CORRECTIONS = 6
ALPHABET = "abcdefghijklmnopqrstuvwxyz"  # only words of letters are corrected


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
        self._starts: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.words)

    def starts_a_word(self, prefix: str) -> bool:
        low = bisect.bisect_left(self.words, prefix)
        return low < len(self.words) and self.words[low].startswith(prefix)

    def warm_up(self) -> None:
        """Build now what ``corrections`` and ``near`` build on first need."""
        self._word_starts()
        self._trigram_index()

    @property
    def warm(self) -> bool:
        """Whether the lookups of ``corrections`` and ``near`` are built."""
        return self._starts is not None and self._grams is not None

    def needs_correction(self, word: str) -> bool:
        """A word of five letters or more that starts no known word."""
        return (len(word) >= MIN_TYPO_LENGTH and word.isalpha()
                and not self.starts_a_word(word))

    def _word_starts(self) -> dict[str, int]:
        """Every start of four letters or more of a known word, with the documents of
        the words it starts."""
        if self._starts is None:
            starts: dict[str, int] = {}
            for known, docs in self.docs.items():
                for end in range(MIN_TYPO_LENGTH - 1, len(known) + 1):
                    starts[known[:end]] = starts.get(known[:end], 0) + docs
            self._starts = starts
        return self._starts

    def corrections(self, word: str) -> list[str]:
        """Starts of known words at edit distance 1 of ``word``, the longest (a start
        that another one extends adds nothing) and most frequent first.

        The variants are those of ``edits1``, generated position by position: an edit at
        position ``i`` keeps ``word[:i]``, so the positions stop where ``word[:i]``
        starts no known word, and a letter is only tried where it extends a known start.
        """
        known = self._word_starts()
        short = MIN_TYPO_LENGTH - 1  # starts shorter than this are not listed: any goes

        def starts(prefix: str) -> bool:
            return len(prefix) < short or prefix in known

        found: dict[str, int] = {}
        for i in range(len(word) + 1):
            head, tail = word[:i], word[i:]
            if not starts(head):
                break
            variants = [head + tail[1:], head + tail[1:2] + tail[:1] + tail[2:]] if tail else []
            for c in ALPHABET:
                extended = head + c
                if starts(extended):
                    variants.append(extended + tail)  # insertion
                    if tail and c != tail[0]:
                        variants.append(extended + tail[1:])  # substitution
            for variant in variants:
                if variant != word and variant in known:
                    found[variant] = known[variant]
        # A shorter start that another candidate extends adds nothing to the search.
        kept = [c for c in found if not any(o != c and o.startswith(c) for o in found)]
        if not kept:
            kept = list(found)
        return sorted(kept, key=lambda c: (-found[c], c))[:MAX_CORRECTIONS]

    def _trigram_index(self) -> dict[str, list[int]]:
        """Trigram -> indexes of the words holding it (word boundaries padded), built on
        first need (a hint)."""
        if self._grams is None:
            grams: dict[str, list[int]] = {}
            for index, known in enumerate(self.words):
                for gram in _trigrams(known):
                    grams.setdefault(gram, []).append(index)
            self._grams = grams
        return self._grams

    def near(self, word: str, limit: int = 3, bound: int = 2) -> list[str]:
        """The known words closest to ``word`` (edit distance ``bound`` at most)."""
        grams = self._trigram_index()
        shared: Counter[int] = Counter()
        for gram in _trigrams(word):
            shared.update(grams.get(gram, ()))
        scored = []
        for index, _ in shared.most_common(200):
            known = self.words[index]
            if known == word or not known.isalpha():
                continue
            d = distance(word, known, bound)
            if d <= bound:
                scored.append((d, -self.docs[known], known))
        return [known for _, _, known in sorted(scored)[:limit]]
