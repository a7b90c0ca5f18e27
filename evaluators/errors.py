"""Why grading failed; the server turns these into retries or ``needs_review``.

Exception tree::

    EvaluationError          grading failed; ``retryable`` says whether to try again
    ├── ModelUnavailable     the model did not answer (timeout, 429, 5xx, every
    │                        fallback failed): retryable
    ├── UnparsableOutput     the model answered outside the schema: retryable a few
    │                        times, then the answer goes to ``needs_review``
    └── SandboxUnavailable   the code sandbox could not start (bubblewrap missing or
                             broken): not retryable until an operator fixes the host

What candidates' code does inside the sandbox (loops, fork bombs, crashes) is never an
error: it is reported in the grade's feedback and scored.
"""

from __future__ import annotations


class EvaluationError(Exception):
    """Grading failed.

    Attributes:
        retryable: whether the same grading may succeed if tried again.
    """

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class ModelUnavailable(EvaluationError):
    """The model did not answer: timeout, rate limit, server error, all fallbacks.

    Attributes:
        model: the model string that was asked first.
    """

    retryable = True

    def __init__(self, message: str, *, model: str) -> None:
        super().__init__(message)
        self.model = model


class UnparsableOutput(EvaluationError):
    """The model answered, but not with JSON matching the task's schema.

    Attributes:
        model: the model that answered.
        raw: what it answered, kept for the audit trail.
    """

    retryable = True

    def __init__(self, message: str, *, model: str, raw: str) -> None:
        super().__init__(message)
        self.model = model
        self.raw = raw


class SandboxUnavailable(EvaluationError):
    """The sandbox itself could not run (not the candidate's code failing)."""

    retryable = False
