"""The ``interview-server`` command line (PRODUCT.md section 3).

The only module that reads ``os.environ`` (through :meth:`Settings.from_environ`) and
configures logging. Exit codes: 0 done, 1 the database failed, 2 bad usage, input or
configuration, 3 the server could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from protocol.definition import DefinitionError, InterviewDefinition, parse_definition
from protocol.ids import InterviewId, UserId
from server import _gc
from server.auth import Role, issue_token, with_kept_secret
from server.errors import ServerError
from server.settings import Settings, SettingsError
from server.storage.attempts import DatabaseStorage, Invitee, migrate
from server.storage.database import Database

logger = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEMO_FILE = EXAMPLES / "full-stack-developer.json"
DEMO_ORG = "demo"
DEMO_CANDIDATE = ("demo-candidate", "Demo Candidate")
DEMO_RECRUITER = ("demo-recruiter", "Demo Recruiter")
DEMO_TOKEN_TTL_S = 12 * 3600
DEFAULT_ORG = "default"
CLI_USER = UserId("cli")

EXIT_OK, EXIT_DATABASE, EXIT_USAGE, EXIT_STARTUP = 0, 1, 2, 3

Command = Callable[[argparse.Namespace, Settings], int]


class InputError(Exception):
    """A file or argument the user gave cannot be used; the message says why."""


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        # --help, or a usage error argparse has already explained.
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        settings = Settings.from_environ(os.environ)
    except SettingsError as exc:
        print(f"interview-server: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(settings)
    command: Command = args.command
    try:
        return command(args, settings)
    except SettingsError as exc:
        print(f"interview-server: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InputError as exc:
        print(f"interview-server: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServerError as exc:
        print(f"interview-server: database error: {exc}", file=sys.stderr)
        return EXIT_DATABASE


def _warn_if_dev_secret(settings: Settings) -> None:
    if settings.uses_dev_secret:
        logger.warning(
            "JWT_SECRET is not set: using the built-in development secret, with which "
            "anyone can sign tokens; set JWT_SECRET (32+ bytes) outside development"
        )


def _local_secret(settings: Settings, *, create: bool) -> Settings:
    try:
        return with_kept_secret(settings, create=create)
    except OSError as exc:
        raise InputError(
            f"cannot keep the JWT secret beside the database: {exc}"
        ) from exc


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# -- arguments ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interview-server",
        description="Real-time timed technical interviews over one WebSocket. "
        "Configuration comes from environment variables (see the README).",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the HTTP and WebSocket server")
    _add_address(serve)
    serve.set_defaults(command=_serve)
    commands.add_parser(
        "migrate", help="create or upgrade the database schema"
    ).set_defaults(command=_migrate)
    _add_token(commands)
    _add_import(commands)
    demo = commands.add_parser(
        "demo",
        help="migrate, import the example interview, print tokens to join it, serve",
    )
    _add_address(demo)
    demo.set_defaults(command=_demo)
    commands.add_parser(
        "worker", help="run a grading worker (with REDIS_URL; else serve grades)"
    ).set_defaults(command=_worker)
    return parser


def _add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to listen on")


def _add_token(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser("token", help="print a signed JWT for a user")
    token.add_argument("--sub", required=True, help="the user id (JWT sub)")
    token.add_argument("--role", required=True, choices=[str(role) for role in Role])
    token.add_argument("--name", required=True, help="display name")
    token.add_argument("--org", help="organisation (required for recruiter and admin)")
    token.add_argument(
        "--ttl", type=int, default=3600, metavar="SECONDS", help="validity in seconds"
    )
    token.set_defaults(command=_token)


def _add_import(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = commands.add_parser(
        "import", help="create an interview from a definition file, print its id"
    )
    load.add_argument("file", type=Path, metavar="FILE", help="interview JSON file")
    load.add_argument(
        "--org", default=DEFAULT_ORG, help=f"owning organisation ({DEFAULT_ORG})"
    )
    load.add_argument(
        "--invite",
        action="append",
        default=[],
        type=_invitee,
        metavar="ID:NAME[:EMAIL]",
        help="invite a candidate (repeatable)",
    )
    load.set_defaults(command=_import)


def _invitee(value: str) -> Invitee:
    candidate_id, _, rest = value.partition(":")
    name, _, email = rest.partition(":")
    if not candidate_id or not name:
        raise argparse.ArgumentTypeError(f"expected ID:NAME[:EMAIL], got {value!r}")
    return Invitee(id=UserId(candidate_id), name=name, email=email or None)


# -- commands -------------------------------------------------------------------------


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    # The secret `demo` kept beside the database replaces the published one first,
    # so that the host check judges the secret that will really sign.
    settings = _local_secret(settings, create=False)
    settings.check_host(args.host)
    return _run_server(settings, host=args.host, port=args.port)


def _run_server(settings: Settings, *, host: str, port: int) -> int:
    # Imported here so that token, import and migrate work without the web stack.
    import uvicorn

    from server.app import create_app, uvicorn_config

    _warn_if_dev_secret(settings)
    server = uvicorn.Server(
        uvicorn_config(create_app(settings), settings, host=host, port=port)
    )
    _gc.tune()
    _gc.freeze()
    server.run()
    return EXIT_OK if server.started else EXIT_STARTUP


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    _run_migrations(settings)
    return EXIT_OK


def _run_migrations(settings: Settings) -> None:
    try:
        asyncio.run(migrate(settings.database_url))
    except (OSError, SQLAlchemyError) as exc:
        # migrate() leaves the engine's errors untranslated; this is its edge.
        raise ServerError(f"migration failed: {exc}") from exc
    logger.info("database schema is up to date")


def _token(args: argparse.Namespace, settings: Settings) -> int:
    settings = _local_secret(settings, create=False)
    _warn_if_dev_secret(settings)
    if settings.jwt_max_ttl_s is not None and args.ttl > settings.jwt_max_ttl_s:
        raise InputError(
            f"--ttl {args.ttl} is longer than JWT_MAX_TTL_S ({settings.jwt_max_ttl_s})"
        )
    try:
        token = _issue(
            settings, sub=args.sub, role=args.role, name=args.name, org=args.org,
            ttl_s=args.ttl,
        )  # fmt: skip
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    print(token)
    return EXIT_OK


def _import(args: argparse.Namespace, settings: Settings) -> int:
    definition = load_definition(args.file).with_default_grace(
        settings.default_grace_ms
    )

    async def create() -> InterviewId:
        async with _storage(settings) as storage:
            record = await storage.create_interview(
                org=args.org, created_by=CLI_USER, definition=definition, now=_now()
            )
            if args.invite:
                await storage.invite(record.id, args.invite, _now())
            return record.id

    print(asyncio.run(create()))
    return EXIT_OK


def load_definition(path: Path) -> InterviewDefinition:
    """Read and validate an interview file.

    Raises:
        InputError: unreadable, not JSON, or not a valid definition (every wrong
            field listed by its path).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InputError(f"{path} is not valid JSON: nested too deeply") from exc
    try:
        return parse_definition(data)
    except DefinitionError as exc:
        lines = [f"  {p['path']}: {p['message']}" for p in exc.problems]
        raise InputError(
            "\n".join([f"{path} is not a valid interview definition:", *lines])
        ) from exc


def _issue(
    settings: Settings, *, sub: str, role: str, name: str, org: str | None, ttl_s: int
) -> str:
    """A token this deployment accepts: its secret, audience and issuer."""
    return issue_token(
        str(settings.jwt_secret),
        sub=sub,
        role=role,
        name=name,
        org=org,
        ttl_s=ttl_s,
        now_s=time.time(),
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    settings = _local_secret(settings, create=True)
    definition = load_definition(DEMO_FILE).with_default_grace(
        settings.default_grace_ms
    )
    _run_migrations(settings)
    interview_id = asyncio.run(_prepare_demo(settings, definition))
    banner = _demo_banner(
        settings, definition.title, interview_id, host=args.host, port=args.port
    )
    print(banner, flush=True)
    return _run_server(settings, host=args.host, port=args.port)


async def _prepare_demo(
    settings: Settings, definition: InterviewDefinition
) -> InterviewId:
    """The demo interview (created once, then reused), the demo candidate invited."""
    async with _storage(settings) as storage:
        existing = [
            record
            for record in await storage.list_interviews(DEMO_ORG)
            if record.definition.title == definition.title
        ]
        if existing:
            interview_id = existing[0].id
        else:
            record = await storage.create_interview(
                org=DEMO_ORG,
                created_by=UserId(DEMO_RECRUITER[0]),
                definition=definition,
                now=_now(),
            )
            interview_id = record.id
        candidate = Invitee(
            id=UserId(DEMO_CANDIDATE[0]), name=DEMO_CANDIDATE[1], email=None
        )
        await storage.invite(interview_id, [candidate], _now())
        return interview_id


def _demo_banner(
    settings: Settings, title: str, interview_id: InterviewId, *, host: str, port: int
) -> str:
    ttl_s = min(DEMO_TOKEN_TTL_S, settings.jwt_max_ttl_s or DEMO_TOKEN_TTL_S)
    (candidate_id, candidate_name), (recruiter_id, recruiter_name) = (
        DEMO_CANDIDATE,
        DEMO_RECRUITER,
    )
    candidate = _issue(
        settings, sub=candidate_id, role=Role.CANDIDATE, name=candidate_name,
        org=None, ttl_s=ttl_s,
    )  # fmt: skip
    recruiter = _issue(
        settings, sub=recruiter_id, role=Role.RECRUITER, name=recruiter_name,
        org=DEMO_ORG, ttl_s=ttl_s,
    )  # fmt: skip
    http_url = settings.public_url or f"http://{_display_host(host)}:{port}"
    return DEMO_BANNER.format(
        http_url=http_url,
        ws_url="ws" + http_url.removeprefix("http") + "/ws/candidate",
        interview_id=interview_id,
        title=title,
        candidate_token=candidate,
        recruiter_token=recruiter,
        valid=f"{ttl_s // 3600} h" if ttl_s >= 3600 else f"{ttl_s} s",
        python=sys.executable,
    )


def _display_host(host: str) -> str:
    # A wildcard address is where the server listens, not where a client connects.
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.redis_url:
        print(
            "interview-server worker: REDIS_URL is not set, so grading runs inside "
            "`interview-server serve`; set REDIS_URL (the same for serve and every "
            "worker) to grade in separate worker processes",
            file=sys.stderr,
        )
        return EXIT_USAGE
    # Imported here so that token, import and migrate work without taskiq.
    from server.grading import worker

    _gc.tune()
    _gc.freeze()
    worker.main(settings)
    return EXIT_OK


# -- helpers --------------------------------------------------------------------------


def _now() -> int:
    return time.time_ns() // 1_000_000


@contextlib.asynccontextmanager
async def _storage(settings: Settings) -> AsyncIterator[DatabaseStorage]:
    storage = DatabaseStorage(
        Database(
            settings.database_url,
            pool_max=settings.db_pool_max,
            timeout_s=settings.db_timeout_s,
            cache_interviews=settings.interview_cache_max,
            cache_bytes=settings.interview_cache_max_bytes,
        )
    )
    await storage.connect()
    try:
        yield storage
    finally:
        await storage.disconnect()


DEMO_BANNER = """
Interview server demo: {title}
  server     {http_url}   (/healthz, /readyz, /metrics, /protocol.schema.json)
  interview  {interview_id}

Candidate token (demo-candidate, valid {valid}):
{candidate_token}

Recruiter token (demo-recruiter, org "demo", valid {valid}):
{recruiter_token}

List the organisation's interviews as the recruiter:
  curl -H "Authorization: Bearer {recruiter_token}" {http_url}/api/interviews

Join as the candidate with websocat (https://github.com/vi/websocat), then type one
frame per line; answer with {{"type":"answer","question_index":0,"answer":"c"}}:
  websocat {ws_url}
  {{"type":"auth","token":"{candidate_token}"}}
  {{"type":"start","interview_id":"{interview_id}"}}

Or with Python (resumes the attempt in progress, if any, and prints every frame):
{python} - <<'EOF'
import asyncio, json, websockets

async def main():
    async with websockets.connect("{ws_url}") as ws:
        await ws.send(json.dumps({{"type": "auth", "token": "{candidate_token}"}}))
        hello = json.loads(await ws.recv())
        print(hello)
        attach = {{"type": "resume"}} if hello["active_session"] else {{
            "type": "start", "interview_id": "{interview_id}"}}
        await ws.send(json.dumps(attach))
        async for frame in ws:
            print(frame)

asyncio.run(main())
EOF
"""


if __name__ == "__main__":
    sys.exit(main())
