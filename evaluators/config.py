"""How graders are built: models per task, the provider's address, sandbox limits.

The server builds one :class:`GraderConfig` from its settings (environment variables
listed in the README) and passes it to :func:`evaluators.build_grader`. A task whose
model is ``None`` is graded by the deterministic offline grader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GraderConfig:
    """Models, transport and sandbox limits for grading.

    Attributes:
        model_short_answer: litellm model string for short answers, or ``None``.
        model_code: litellm model string for code, or ``None``.
        model_summary: litellm model string for summaries, or ``None``.
        api_base: base URL of a self-hosted OpenAI-compatible server, if any.
        api_key: the provider's key (never shown in ``repr``).
        timeout_s: seconds allowed for one model request.
        retries: retries per model after the first request (429, 5xx, timeouts).
        fallbacks: models tried in order when a task's model keeps failing.
        sandbox_cpu_s: CPU seconds for one run of a candidate's code.
        sandbox_wall_s: wall-clock seconds for one run, start-up included.
        sandbox_memory_bytes: address-space limit of each sandboxed process.
        sandbox_processes: processes the sandbox may hold at once.
        sandbox_output_bytes: stdout and stderr kept before the run is stopped.
        sandbox_file_bytes: largest file the code may write (in its private /tmp).
        sandbox_tmp_bytes: size of the private /tmp.
        sandbox_python: the interpreter run inside the sandbox (a system Python under
            /usr, so that nothing outside /usr needs to be visible).
        sandbox_concurrency: sandbox runs at once in this process, whatever the
            number of grades at once (``None``: one per core).
    """

    model_short_answer: str | None = None
    model_code: str | None = None
    model_summary: str | None = None
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30
    retries: int = 2
    fallbacks: tuple[str, ...] = ()
    sandbox_cpu_s: int = 2
    sandbox_wall_s: float = 5
    sandbox_memory_bytes: int = 256 * MIB
    sandbox_processes: int = 16
    sandbox_output_bytes: int = 64 * 1024
    sandbox_file_bytes: int = 1 * MIB
    sandbox_tmp_bytes: int = 8 * MIB
    sandbox_python: str = "/usr/bin/python3"
    sandbox_concurrency: int | None = None

    @property
    def models(self) -> tuple[str, ...]:
        """Every distinct model string configured (tasks, then fallbacks), in order."""
        named = (self.model_short_answer, self.model_code, self.model_summary)
        found = [model for model in (*named, *self.fallbacks) if model]
        return tuple(dict.fromkeys(found))
