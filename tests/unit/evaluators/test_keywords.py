"""Keyword evidence (evaluators/keywords.py): keywords count only in sentences."""

from __future__ import annotations

import pytest

from evaluators.keywords import (
    MAX_SEGMENTS,
    KeywordEvidence,
    keyword_evidence,
    keywords_found,
    segments,
)
from tests.unit.evaluators._answers import (
    GENERIC_LIST,
    GOOD,
    GOOD_BULLETS,
    KEYWORDS,
    PASTED,
    SAMPLE,
    SHORT,
)

TOPIC = f"How does a database index speed up reads?\n{SAMPLE}"


def evidence(answer: str, keywords: tuple[str, ...] = KEYWORDS) -> KeywordEvidence:
    return keyword_evidence(keywords, answer, topic=TOPIC, need=40)


@pytest.mark.parametrize(
    ("text", "prose"),
    [
        ("A lookup reads a few pages of the tree.", True),
        ("- B-tree: the keys are kept sorted in a shallow tree.", True),
        ("b-tree, lookup, scan, storage", False),
        ("b-tree lookup scan storage latency cache index mutex", False),
        ("The lookup.", False),  # too short
        ("the cache and the index and the mutex and the heap", False),  # no verb
        ("It uses a cache, a mutex, a heap, a queue, a lock.", False),  # comma list
        (" ".join(["the index is fast and"] * 13), False),  # over 60 words
    ],
)
def test_a_segment_is_prose_when_it_reads_like_a_sentence(
    text: str, prose: bool
) -> None:
    assert [segment.prose for segment in segments(text)] == [prose]


def test_answers_are_cut_at_sentence_ends_semicolons_and_lines_not_inside_words() -> (
    None
):
    found = segments("Node.js is fast; it uses v8.\nA second line here")

    assert [segment.text for segment in found] == [
        "Node.js is fast",
        "it uses v8",
        "A second line here",
    ]


def test_keywords_used_in_a_sentence_are_credited() -> None:
    found = keyword_evidence(["lookup"], "A lookup reads a few pages of the tree.")

    assert found.used == ("lookup",) and found.listed == ()
    assert found.share() == 1


def test_keywords_outside_sentences_are_listed_and_earn_nothing() -> None:
    found = evidence(PASTED)

    assert found.used == ()
    assert found.listed == KEYWORDS
    assert found.share() == 0
    assert any("outside sentences" in reason for reason in found.reasons)


def test_a_sentence_made_mostly_of_keywords_credits_none_of_them() -> None:
    found = evidence("The b-tree lookup scan storage.")

    assert found.used == ()


def test_a_repeated_keyword_counts_once() -> None:
    once = evidence("A lookup reads a few pages of the tree.")
    often = evidence("A lookup reads pages. The lookup is quick. Every lookup helps.")

    assert once.used == often.used == ("lookup",)
    assert often.share() == once.share() == 0.25


def test_a_repeated_sentence_counts_once_and_its_copies_as_padding() -> None:
    found = evidence(" ".join(["A lookup reads a few pages of the tree."] * 4))

    assert found.used == ("lookup",)
    assert found.factor < 0.6
    assert any("repeated" in reason for reason in found.reasons)


def test_one_keyword_counts_per_four_words_of_prose() -> None:
    found = keyword_evidence(
        ["b-tree", "lookup", "scan", "storage"],
        "Each b-tree lookup skips a scan. It needs less storage.",  # 10 words
    )

    assert found.cap == 3
    assert found.share() == 0.75


def test_sentences_that_repeat_one_template_are_padding() -> None:
    terms = [*KEYWORDS, "cache", "mutex", "heap", "queue"]
    answer = " ".join(f"The {word} is important." for word in terms)

    found = evidence(answer)

    assert found.used == KEYWORDS
    assert found.share() <= 0.25


def test_an_answer_that_is_mostly_a_list_loses_the_credit_of_its_sentences() -> None:
    found = evidence(f"A B-tree makes a lookup fast. {GENERIC_LIST}")

    assert found.used == ("b-tree", "lookup")
    assert found.share() < 0.1


def test_a_long_off_topic_answer_is_scaled_by_its_on_topic_share() -> None:
    off_topic = " ".join(
        f"Sentence {n} talks about kubernetes pods." for n in range(40)
    )

    found = evidence(f"{off_topic} A B-tree makes a lookup fast.")

    assert found.used == ("b-tree", "lookup")
    assert found.share() < 0.1
    assert any("off topic" in reason for reason in found.reasons)


def test_a_long_answer_that_stays_on_topic_is_not_scaled_down() -> None:
    answer = f"{GOOD}\n{GOOD_BULLETS}\n{SHORT}"  # over three times the 25 needed

    found = keyword_evidence(["lookup"], answer, topic=TOPIC)

    assert (found.share(), found.reasons) == (1, ())


def test_a_genuine_answer_gets_every_keyword_and_no_penalty() -> None:
    found = evidence(GOOD)

    assert found.used == KEYWORDS
    assert (found.factor, found.reasons, found.share()) == (1, (), 1)


def test_an_empty_answer_or_no_keywords_give_nothing() -> None:
    assert evidence("").share() == 0
    assert keyword_evidence([], GOOD).share() == 0


def test_only_accepted_keywords_count_ignoring_case() -> None:
    found = evidence(GOOD)

    assert found.share(["B-Tree", "lookup", "not a keyword"]) == 0.5


def test_keywords_found_is_still_a_plain_whole_word_search() -> None:
    assert keywords_found(KEYWORDS, PASTED) == list(KEYWORDS)


def test_only_the_first_segments_are_read_so_a_huge_answer_costs_bounded_work() -> None:
    filler = "".join(
        f"The weather on day {day} is pleasant and the garden grows. "
        for day in range(MAX_SEGMENTS)
    )
    late = "A b-tree is used so that a lookup reads fewer pages from storage."

    assert evidence(late).used
    assert evidence(filler + late).used == ()
