"""Per-question statistics of an interview for the dashboard's charts (issue 11):
Moodle's facility, standard deviation and discrimination per question, and the
distribution of total scores, over the evaluated attempts
(:mod:`evaluators.statistics`)."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response

from evaluators.statistics import interview_statistics
from server.http.access import own_interview, parsed_query, reply, services, staff
from server.http.bodies import Statistics, StatisticsQuery
from server.http.openapi import Access, Operation, Reply


async def statistics(request: Request) -> Response:
    interview = await own_interview(request, staff(request))
    query = parsed_query(request, StatisticsQuery)
    attempts = await services(request).catalogue.graded_scores(interview.id)
    points = [question.points for question in interview.definition.questions]
    computed = interview_statistics(points, attempts, sample=query.attempts)
    return reply(Statistics(interview_id=interview.id, **asdict(computed)))


def statistics_operations() -> list[Operation]:
    return [
        Operation(
            "GET",
            "/api/interviews/{interview_id}/statistics",
            statistics,
            "Per-question statistics and the score distribution",
            Access.STAFF,
            (Reply(200, "The statistics", Statistics),),
            "results",
            query=StatisticsQuery,
            description="Over evaluated attempts (an attempt with an answer that "
            "needs review and no override waits until it is scored). Facility: "
            "mean score in percent of the points; standard deviation in percent "
            "of the points; discrimination: 100 times the correlation of the "
            "question's score with the rest of the test (null when undefined).",
        )
    ]
