"""Keyword evidence: which expected keywords an answer uses in its own sentences.

A keyword earns credit only as part of an explanation, never as an item of a list
(a generic list of technical words used to score full marks offline). The answer is
cut into segments (sentences, clauses after ``;``, lines); a segment is *prose* when
it reads like a sentence:

- it has 4 to 60 words, at least 15 % of them function words ("the", "is", "of"...),
  and a verb-like word (an auxiliary, a common verb, or an -ed, -ing or -s form);
- it is not a comma list (three or more items of under three words on average).

Then:

- a keyword counts once however often it appears, and only if it appears in a prose
  segment of which expected keywords make up at most half the words; keywords that
  appear only elsewhere are reported as *listed*;
- at most one keyword counts per 4 words of prose (density cap);
- a repeated segment counts once; its copies, prose that repeats the template of an
  earlier sentence ("The cache is important. The mutex is important."), and every
  segment that is not prose are list-like words, and when they are more than half
  the answer the credit falls linearly to 0 (an answer that is all list earns
  nothing);
- an answer more than three times longer than needed (the sample solution, 12 words
  per keyword, at least 25 words) has its credit scaled by the share of it that is on
  topic (prose mentioning a keyword or a word of the question or sample solution),
  plus half the needed length as an allowance: long essays on other subjects with a
  keyword sentence added earn little.

This is a heuristic, which is why offline grades are provisional. The model grader
uses only :func:`keywords_found` and lets the model judge the rest.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

MIN_SENTENCE_WORDS = 4
MAX_SENTENCE_WORDS = 60
MIN_FUNCTION_SHARE = 0.15
MIN_WORDS_PER_LIST_ITEM = 3
MAX_KEYWORD_SHARE = 0.5
WORDS_PER_KEYWORD = 4
MAX_LIST_SHARE = 0.5
NEED_PER_KEYWORD = 12
MIN_NEED = 25
LONG_FACTOR = 3
MAX_SEGMENTS = 400
"""Segments of an answer read for evidence; the rest count as words, never as prose.
Keeps the work per answer bounded (keywords x segments pattern searches): an answer
of 400 sentences is ten times longer than any question here needs."""

_WORD = re.compile(r"[^\W_](?:[\w+#'-]*[\w+#])?")
_BREAK = re.compile(r"[.!?;]+(?=\s|$)|\n")
_VERB_FORM = re.compile(r"\w{2,}(?:ed|ing|[^su]s)$")

FUNCTION_WORDS = frozenset(
    """a an the this that these those it its they them their there here he she we you
    i one each every all any some no not only both either neither of to in on at by
    for from with without into onto over under about after before between through
    during than then so because since while when where which who whom whose what how
    why if unless until though although and or but nor as also just very more most
    less least such other same too can't don't doesn't isn't aren't won't""".split()
)
VERBS = frozenset(
    """is are was were be been being am has have had do does did can could will would
    shall should may might must need needs let lets make makes made use uses used
    keep keeps kept take takes took give gives gave get gets got mean means meant
    run runs ran read reads write writes wrote hold holds held find finds found
    return returns avoid avoids allow allows ensure ensures store stores cost costs
    see sees become becomes stay stays fail fails work works""".split()
)


@dataclass(frozen=True, slots=True)
class Segment:
    """A sentence, clause or line of an answer, with its lowercased words."""

    text: str
    words: tuple[str, ...]
    prose: bool


@dataclass(frozen=True, slots=True)
class KeywordEvidence:
    """What an answer shows of its expected keywords (see the module docstring).

    ``used`` are the keywords found in prose, ``listed`` those found only outside
    it; ``cap`` is how many keywords its prose can carry; ``factor`` (0..1) scales
    the credit down for list-like, padded or off-topic answers; ``reasons`` says why,
    for the feedback.
    """

    total: int
    used: tuple[str, ...]
    listed: tuple[str, ...]
    cap: int
    factor: float
    reasons: tuple[str, ...]

    def share(self, accepted: Collection[str] | None = None) -> float:
        """The share (0..1) of the keywords credited; only ``accepted`` ones count
        when given (compared ignoring case)."""
        if not self.total:
            return 0.0
        used = self.used
        if accepted is not None:
            allowed = {keyword.lower() for keyword in accepted}
            used = tuple(k for k in used if k.lower() in allowed)
        return min(len(used), self.cap) / self.total * self.factor


def keywords_found(keywords: Sequence[str], answer: str) -> list[str]:
    """The keywords that occur in ``answer`` as whole words, ignoring case.

    "Whole word" means not preceded or followed by a letter, digit or underscore, so
    that keywords ending in punctuation ("c++", "b-tree") still match, and "index"
    does not match "indexes".
    """
    return [keyword for keyword in keywords if _pattern(keyword).search(answer)]


@functools.lru_cache(maxsize=4096)
def _pattern(keyword: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(keyword)}(?!\w)", re.IGNORECASE)


def words(text: str) -> tuple[str, ...]:
    """The lowercased words of ``text`` ("b-tree", "c++" and "don't" are one word)."""
    return tuple(word.lower() for word in _WORD.findall(text))


def segments(answer: str) -> list[Segment]:
    """``answer`` cut into sentences, clauses and lines, each judged prose or not."""
    pieces = (piece.strip() for piece in _BREAK.split(answer))
    return [_segment(piece) for piece in pieces if words(piece)]


def _segment(text: str) -> Segment:
    found = words(text)
    return Segment(text, found, _is_prose(text, found))


def _is_prose(text: str, found: tuple[str, ...]) -> bool:
    if not MIN_SENTENCE_WORDS <= len(found) <= MAX_SENTENCE_WORDS:
        return False
    function = sum(word in FUNCTION_WORDS for word in found)
    if function < max(1.0, MIN_FUNCTION_SHARE * len(found)):
        return False
    if not any(word in VERBS or _VERB_FORM.match(word) for word in found):
        return False
    items = text.split(",")
    return len(items) < 3 or len(found) / len(items) >= MIN_WORDS_PER_LIST_ITEM


def keyword_evidence(
    keywords: Sequence[str],
    answer: str,
    *,
    topic: str = "",
    need: int = 0,
    max_share: float = MAX_KEYWORD_SHARE,
    words_per_keyword: int = WORDS_PER_KEYWORD,
) -> KeywordEvidence:
    """Which ``keywords`` ``answer`` uses in sentences (see the module docstring).

    Args:
        keywords: the expected keywords.
        answer: the candidate's text.
        topic: the question and sample solution, whose words make prose on topic.
        need: how many words a full answer needs (the sample solution's length).
        max_share: how much of a sentence its keywords may be.
        words_per_keyword: the density cap (words of prose per keyword credited).
    """
    every = segments(answer)
    unique, templated = _unique(every)
    prose = [s for s in unique[:MAX_SEGMENTS] if s.prose]
    counts = [_counts(keywords, s) for s in prose]
    credited = [
        _credited(found, s, keywords, max_share)
        for found, s in zip(counts, prose, strict=True)
    ]
    used = [k for k in keywords if any(k in found for found in credited)]
    listed = [k for k in keywords_found(keywords, answer) if k not in used]
    prose_words = sum(len(s.words) for s in prose)
    total_words = sum(len(s.words) for s in every)
    reasons: list[str] = []
    if listed:
        reasons.append("keywords outside sentences earn nothing: " + ", ".join(listed))
    cap = -(-prose_words // words_per_keyword)
    if len(used) > cap:
        reasons.append(f"{cap} keywords at most for {prose_words} words of prose")
    list_words = total_words - prose_words + templated
    factor = _list_factor(list_words, total_words, reasons)
    needed = max(MIN_NEED, need, NEED_PER_KEYWORD * len(keywords))
    on_topic = _on_topic_words(prose, counts, topic)
    factor *= _length_factor(on_topic, total_words, needed, reasons)
    return KeywordEvidence(
        len(keywords), tuple(used), tuple(listed), cap, factor, tuple(reasons)
    )


def _unique(found: list[Segment]) -> tuple[list[Segment], int]:
    """The segments without copies, and how many words of prose repeat the
    template of an earlier sentence."""
    seen: set[tuple[str, ...]] = set()
    templates: set[tuple[str, ...]] = set()
    unique: list[Segment] = []
    padding = 0
    for segment in found:
        if segment.words in seen:
            continue
        seen.add(segment.words)
        unique.append(segment)
        template = _template(segment.words)
        if segment.prose and template in templates:
            padding += len(segment.words)
        templates.add(template)
    return unique, padding


def _template(found: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(w if w in FUNCTION_WORDS or w in VERBS else "" for w in found)


def _counts(keywords: Sequence[str], segment: Segment) -> dict[str, int]:
    """How often each keyword occurs in ``segment`` (those that do)."""
    found = {k: len(_pattern(k).findall(segment.text)) for k in keywords}
    return {k: count for k, count in found.items() if count}


def _credited(
    counts: Mapping[str, int],
    segment: Segment,
    keywords: Sequence[str],
    max_share: float,
) -> frozenset[str]:
    """The keywords ``segment`` credits: all it holds, unless keywords make up
    more than ``max_share`` of its words (then none)."""
    keyword_words = sum(count * len(words(k)) for k, count in counts.items())
    if keyword_words > max_share * len(segment.words):
        return frozenset()
    return frozenset(counts)


def _list_factor(list_words: int, total_words: int, reasons: list[str]) -> float:
    if not total_words:
        return 0.0
    share = list_words / total_words
    if share <= MAX_LIST_SHARE:
        return 1.0
    reasons.append(f"{share:.0%} of the answer is list-like or repeated")
    return (1 - share) / (1 - MAX_LIST_SHARE)


def _on_topic_words(
    prose: Sequence[Segment], counts: Sequence[Mapping[str, int]], topic: str
) -> int:
    common = FUNCTION_WORDS | VERBS
    vocabulary = {w for w in words(topic) if len(w) >= 4 and w not in common}
    return sum(
        len(s.words)
        for s, found in zip(prose, counts, strict=True)
        if found or vocabulary.intersection(s.words)
    )


def _length_factor(
    on_topic: int, total_words: int, needed: int, reasons: list[str]
) -> float:
    if total_words <= LONG_FACTOR * needed:
        return 1.0
    factor = min(1.0, (on_topic + needed // 2) / total_words)
    if factor < 1.0:
        reasons.append(
            f"{total_words} words where about {needed} would do, "
            f"{total_words - on_topic} of them off topic"
        )
    return factor
