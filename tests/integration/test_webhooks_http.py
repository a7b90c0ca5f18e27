"""The webhook API (server/http/webhooks.py) on a real database; deliveries go to a
real receiver on 127.0.0.1 and are verified with the ``standardwebhooks`` reference.

Every route is in the authorisation matrix: no token, a malformed, expired or
forged one is 401, a candidate 403, a recruiter of another organisation 404 for
the endpoint of this one (and never sees it in lists), recruiters and admins of the
organisation succeed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.datastructures import Secret

from protocol.ids import Millis
from protocol.webhooks.schedule import SECOND
from server.auth import issue_token
from server.candidate.scheduler import Scheduler
from server.cluster.bus import InProcessBus
from server.cluster.lock import InProcessLock
from server.http import exception_handlers, middleware, routes
from server.services import Services
from server.settings import Settings
from server.storage.attempts import DatabaseStorage, InterviewRecord
from server.storage.webhooks import WebhookStore
from tests.integration._grading import FakeClock
from tests.integration._webhooks import complete, deliver, make_dispatcher, wall
from tests.receiver import Receiver, Reply, receiving

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-long-enough-for-hs256"
UNUSED: Any = None
"""The webhook routes never reach the results store or grading."""


def token(
    role: str = "recruiter",
    *,
    org: str | None = "acme",
    secret: str = SECRET,
    now_s: float | None = None,
) -> str:
    return issue_token(
        secret,
        sub="rita",
        role=role,
        name="Rita",
        org=None if role == "candidate" else org,
        now_s=time.time() if now_s is None else now_s,
    )


def auth(role: str = "recruiter", *, org: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, org=org)}"}


@dataclass
class Api:
    http: httpx.AsyncClient
    store: WebhookStore
    clock: FakeClock
    woken: list[Millis] = field(default_factory=list)

    async def create(self, url: str, **fields: object) -> dict[str, Any]:
        body = {"url": url, "event_types": ["session.completed"], **fields}
        response = await self.http.post("/api/webhooks", json=body, headers=auth())
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


def _app(
    storage: DatabaseStorage, clock: FakeClock, woken: list[Millis], allow: bool
) -> Starlette:
    settings = Settings(jwt_secret=Secret(SECRET), webhook_allow_private=allow)
    app = Starlette(
        routes=routes(), middleware=middleware, exception_handlers=exception_handlers
    )
    app.state.services = Services(
        settings=settings,
        clock=clock,
        storage=storage,
        results=UNUSED,
        catalogue=UNUSED,
        lock=InProcessLock(),
        bus=InProcessBus(),
        grading=UNUSED,
        scheduler=Scheduler(clock),
        webhooks=WebhookStore(storage.database),
        wake_webhooks=lambda: woken.append(clock()),
    )
    return app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall())


async def _api(storage: DatabaseStorage, clock: FakeClock, allow: bool) -> Api:
    woken: list[Millis] = []
    transport = httpx.ASGITransport(app=_app(storage, clock, woken, allow))
    http = httpx.AsyncClient(transport=transport, base_url="http://test")
    return Api(http, WebhookStore(storage.database), clock, woken)


@pytest.fixture
async def api(storage: DatabaseStorage, clock: FakeClock) -> AsyncIterator[Api]:
    # Private addresses allowed: the receiver listens on 127.0.0.1.
    made = await _api(storage, clock, allow=True)
    async with made.http:
        yield made


@pytest.fixture
async def strict(storage: DatabaseStorage, clock: FakeClock) -> AsyncIterator[Api]:
    made = await _api(storage, clock, allow=False)
    async with made.http:
        yield made


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


# -- endpoints ------------------------------------------------------------------------


async def test_an_endpoint_is_created_with_a_secret_shown_only_then(
    api: Api, clock: FakeClock
) -> None:
    response = await api.http.post(
        "/api/webhooks",
        json={
            "url": "http://127.0.0.1:9/in",
            "event_types": ["session.evaluated", "session.completed"],
            "description": "ATS",
        },
        headers=auth(),
    )

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["secret"].startswith("whsec_")
    assert response.headers["location"] == f"/api/webhooks/{created['id']}"
    assert (
        created
        | {
            "url": "http://127.0.0.1:9/in",
            "event_types": ["session.completed", "session.evaluated"],
            "description": "ATS",
            "enabled": True,
            "disabled_reason": None,
            "previous_secret_until": None,
            "created_by": "recruiter:rita",
            "created_at": clock(),
        }
        == created
    )
    shown = await api.http.get(f"/api/webhooks/{created['id']}", headers=auth())
    listed = await api.http.get("/api/webhooks", headers=auth())
    assert "secret" not in shown.json()
    assert created["secret"] not in shown.text + listed.text
    assert [hook["id"] for hook in listed.json()["webhooks"]] == [created["id"]]


LOCAL = "http://127.0.0.1/"
DONE = ["session.completed"]


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({"event_types": DONE}, ["url"]),
        ({"url": "ftp://x.example/", "event_types": DONE}, ["url"]),
        ({"url": "http://u:p@x.example/", "event_types": DONE}, ["url"]),
        ({"url": LOCAL, "event_types": []}, ["event_types"]),
        ({"url": LOCAL, "event_types": ["session.nope"]}, ["event_types.0"]),
        ({"url": LOCAL, "event_types": DONE, "x": 1}, ["x"]),
        ({"url": LOCAL, "event_types": DONE, "enabled": "yes"}, ["enabled"]),
        (
            {"url": LOCAL, "event_types": DONE, "description": "d" * 501},
            ["description"],
        ),
        ([], ["(root)"]),
    ],
)
async def test_an_invalid_endpoint_is_422_with_the_paths_at_fault(
    api: Api, body: object, paths: list[str]
) -> None:
    response = await api.http.post("/api/webhooks", json=body, headers=auth())

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert [problem["path"] for problem in response.json()["problems"]] == paths


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one number
        "http://100.64.0.1/hook",
    ],
)
async def test_a_url_on_an_inner_network_is_refused_unless_allowed(
    strict: Api, api: Api, url: str
) -> None:
    body = {"url": url, "event_types": ["session.completed"]}

    refused = await strict.http.post("/api/webhooks", json=body, headers=auth())

    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["problems"]
    assert problem["path"] == "url"
    assert "WEBHOOK_ALLOW_PRIVATE" in problem["message"]
    allowed = await api.http.post("/api/webhooks", json=body, headers=auth())
    assert allowed.status_code == 201, allowed.text


async def test_a_public_address_is_accepted_without_allowing_private_ones(
    strict: Api,
) -> None:
    created = await strict.create("https://93.184.216.34/hooks")

    assert created["url"] == "https://93.184.216.34/hooks"


async def test_a_host_that_does_not_resolve_is_refused(strict: Api) -> None:
    body = {"url": "http://no-such-host.invalid/", "event_types": ["session.completed"]}

    response = await strict.http.post("/api/webhooks", json=body, headers=auth())

    assert response.status_code == 422
    assert "does not resolve" in response.json()["problems"][0]["message"]


async def test_an_update_to_an_inner_address_is_refused(strict: Api, api: Api) -> None:
    created = await strict.create("https://93.184.216.34/hooks")

    response = await strict.http.patch(
        f"/api/webhooks/{created['id']}",
        json={"url": "http://10.0.0.1/"},
        headers=auth(),
    )

    assert response.status_code == 422
    assert response.json()["problems"][0]["path"] == "url"


async def test_an_update_changes_what_it_names_and_keeps_the_rest(
    api: Api, clock: FakeClock
) -> None:
    created = await api.create("http://127.0.0.1:9/a", description="first")
    clock.now += 1_000

    response = await api.http.patch(
        f"/api/webhooks/{created['id']}",
        json={"url": "http://127.0.0.1:9/b", "event_types": ["score.overridden"]},
        headers=auth(),
    )

    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["url"] == "http://127.0.0.1:9/b"
    assert updated["event_types"] == ["score.overridden"]
    assert updated["description"] == "first"
    assert updated["updated_at"] == clock()
    bad = await api.http.patch(
        f"/api/webhooks/{created['id']}", json={"event_types": []}, headers=auth()
    )
    assert bad.status_code == 422


async def test_an_endpoint_that_is_deleted_is_gone_with_its_deliveries(
    api: Api, storage: DatabaseStorage, interview: InterviewRecord, clock: FakeClock
) -> None:
    created = await api.create("http://127.0.0.1:9/a")
    await complete(storage, interview, clock)
    path = f"/api/webhooks/{created['id']}"

    assert (await api.http.delete(path, headers=auth())).status_code == 204

    assert (await api.http.get(path, headers=auth())).status_code == 404
    assert (await api.http.get(path + "/deliveries", headers=auth())).status_code == 404
    assert (await api.http.delete(path, headers=auth())).status_code == 404
    assert await api.store.claim(clock(), lease_ms=1, limit=10) == []


async def test_an_organisation_may_have_only_so_many_endpoints(
    storage: DatabaseStorage, clock: FakeClock
) -> None:
    woken: list[Millis] = []
    app = _app(storage, clock, woken, allow=True)
    services = app.state.services
    app.state.services = type(services)(
        **{
            **{f: getattr(services, f) for f in services.__dataclass_fields__},
            "settings": Settings(
                jwt_secret=Secret(SECRET),
                webhook_allow_private=True,
                webhook_max_endpoints=2,
            ),
        }
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        body = {"url": "http://127.0.0.1:9/", "event_types": ["session.completed"]}
        codes = [
            (await http.post("/api/webhooks", json=body, headers=auth())).status_code
            for _ in range(3)
        ]
        other = await http.post("/api/webhooks", json=body, headers=auth(org="globex"))

    assert codes == [201, 201, 409]
    assert other.status_code == 201


# -- rotation, deliveries, redelivery -------------------------------------------------


async def test_a_rotation_shows_the_new_secret_and_both_sign_during_the_grace(
    api: Api,
    storage: DatabaseStorage,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
) -> None:
    created = await api.create(receiver.url())

    response = await api.http.post(
        f"/api/webhooks/{created['id']}/rotate",
        json={"grace_s": 3600},
        headers=auth(),
    )

    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["secret"] != created["secret"]
    assert rotated["previous_secret_until"] == clock() + 3600 * SECOND
    await complete(storage, interview, clock)
    dispatcher = make_dispatcher(api.store, clock)
    try:
        await deliver(dispatcher)
    finally:
        await dispatcher.sender.close()
    request = await receiver.next()
    assert len(request.headers["webhook-signature"].split()) == 2
    for secret in (created["secret"], rotated["secret"]):
        assert Webhook(secret).verify(request.body, request.headers)


async def test_a_rotation_without_a_body_uses_the_default_grace(api: Api) -> None:
    created = await api.create("http://127.0.0.1:9/")

    response = await api.http.post(
        f"/api/webhooks/{created['id']}/rotate", headers=auth()
    )

    assert response.status_code == 200
    grace = Settings().webhook_rotation_grace_s * SECOND
    assert response.json()["previous_secret_until"] == api.clock() + grace
    refused = await api.http.post(
        f"/api/webhooks/{created['id']}/rotate",
        json={"grace_s": -1},
        headers=auth(),
    )
    assert refused.status_code == 422
    assert refused.json()["problems"][0]["path"] == "grace_s"


async def test_deliveries_are_paged_newest_first_with_a_cursor(
    api: Api, storage: DatabaseStorage, interview: InterviewRecord, clock: FakeClock
) -> None:
    created = await api.create("http://127.0.0.1:9/")
    for _ in range(5):
        clock.now += 1
        await complete(storage, interview, clock)
    path = f"/api/webhooks/{created['id']}/deliveries"

    pages, after = [], ""
    while True:
        response = await api.http.get(
            path, params={"limit": 2, "after": after}, headers=auth()
        )
        assert response.status_code == 200, response.text
        pages.append(response.json()["deliveries"])
        after = response.json()["next"]
        if after is None:
            break

    assert [len(page) for page in pages] == [2, 2, 1]
    times = [delivery["created_at"] for page in pages for delivery in page]
    assert times == sorted(times, reverse=True)
    assert len({d["id"] for page in pages for d in page}) == 5
    pending = await api.http.get(path, params={"status": "pending"}, headers=auth())
    delivered = await api.http.get(path, params={"status": "delivered"}, headers=auth())
    assert len(pending.json()["deliveries"]) == 5
    assert delivered.json()["deliveries"] == []


@pytest.mark.parametrize(
    "query", [{"limit": "0"}, {"limit": "x"}, {"after": "abc"}, {"status": "lost"}]
)
async def test_a_bad_page_parameter_is_422(api: Api, query: dict[str, str]) -> None:
    created = await api.create("http://127.0.0.1:9/")

    response = await api.http.get(
        f"/api/webhooks/{created['id']}/deliveries", params=query, headers=auth()
    )

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


async def test_a_delivery_is_redelivered_on_request_and_logged(
    api: Api,
    storage: DatabaseStorage,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
) -> None:
    created = await api.create(receiver.url())
    await complete(storage, interview, clock)
    dispatcher = make_dispatcher(api.store, clock)
    try:
        await deliver(dispatcher)
        first = await receiver.next()
        [delivery] = (
            await api.http.get(
                f"/api/webhooks/{created['id']}/deliveries", headers=auth()
            )
        ).json()["deliveries"]
        assert delivery["status"] == "delivered"
        clock.now += 60 * SECOND
        path = f"/api/webhooks/{created['id']}/deliveries/{delivery['id']}"

        response = await api.http.post(path + "/redeliver", headers=auth())

        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending"
        assert response.json()["next_attempt_at"] == clock()
        assert api.woken == [clock()]
        assert await deliver(dispatcher) == 1
    finally:
        await dispatcher.sender.close()
    again = await receiver.next()
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert Webhook(created["secret"]).verify(again.body, again.headers)
    detail = (await api.http.get(path, headers=auth())).json()
    assert detail["status"] == "delivered"
    assert [line["number"] for line in detail["log"]] == [2, 1]
    assert {line["status_code"] for line in detail["log"]} == {204}


async def test_a_redelivery_is_refused_while_in_flight_or_disabled(
    api: Api, storage: DatabaseStorage, interview: InterviewRecord, clock: FakeClock
) -> None:
    created = await api.create("http://127.0.0.1:9/")
    await complete(storage, interview, clock)
    [claim] = await api.store.claim(clock(), lease_ms=60 * SECOND, limit=1)
    path = f"/api/webhooks/{created['id']}/deliveries/{claim.delivery_id}/redeliver"

    in_flight = await api.http.post(path, headers=auth())
    await api.http.patch(
        f"/api/webhooks/{created['id']}", json={"enabled": False}, headers=auth()
    )
    clock.now += 60 * SECOND
    disabled = await api.http.post(path, headers=auth())

    assert (in_flight.status_code, disabled.status_code) == (409, 409)
    assert "in flight" in in_flight.json()["message"]
    assert "disabled" in disabled.json()["message"]


async def test_enabling_an_endpoint_the_server_disabled_clears_the_reason(
    api: Api,
    storage: DatabaseStorage,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
) -> None:
    receiver.replies.append(Reply(410))
    created = await api.create(receiver.url())
    await complete(storage, interview, clock)
    dispatcher = make_dispatcher(api.store, clock)
    try:
        await deliver(dispatcher)
    finally:
        await dispatcher.sender.close()
    path = f"/api/webhooks/{created['id']}"
    gone = (await api.http.get(path, headers=auth())).json()

    enabled = await api.http.patch(path, json={"enabled": True}, headers=auth())

    assert (gone["enabled"], gone["disabled_reason"]) == (False, "gone")
    assert enabled.json()["enabled"] is True
    assert enabled.json()["disabled_reason"] is None
    assert api.woken == [clock()]


# -- authorisation --------------------------------------------------------------------

BODIES: dict[str, object] = {
    "create": {"url": "http://127.0.0.1:9/", "event_types": ["session.completed"]},
    "update": {"description": "changed"},
    "rotate": {"grace_s": 60},
}
ROUTES = [
    ("POST", "/api/webhooks", "create"),
    ("GET", "/api/webhooks", None),
    ("GET", "/api/webhooks/{hook}", None),
    ("PATCH", "/api/webhooks/{hook}", "update"),
    ("DELETE", "/api/webhooks/{hook}", None),
    ("POST", "/api/webhooks/{hook}/rotate", "rotate"),
    ("GET", "/api/webhooks/{hook}/deliveries", None),
    ("GET", "/api/webhooks/{hook}/deliveries/{delivery}", None),
    ("POST", "/api/webhooks/{hook}/deliveries/{delivery}/redeliver", None),
]
CALLERS: dict[str, Callable[[], dict[str, str]]] = {
    "no token": dict,
    "malformed": lambda: {"Authorization": "Bearer not.a.jwt"},
    "not bearer": lambda: {"Authorization": "Basic cml0YTpwdw=="},
    "expired": lambda: {"Authorization": f"Bearer {token(now_s=time.time() - 7200)}"},
    "other secret": lambda: {
        "Authorization": f"Bearer {token(secret='another-secret-at-least-32-bytes!!')}"
    },
}


@dataclass
class Objects:
    hook: str
    delivery: str


@pytest.fixture
async def objects(
    api: Api, storage: DatabaseStorage, interview: InterviewRecord, clock: FakeClock
) -> Objects:
    created = await api.create("http://127.0.0.1:9/")
    await complete(storage, interview, clock)
    page = await api.store.deliveries("acme", created["id"], after=None, limit=1)
    assert page is not None
    return Objects(created["id"], page.deliveries[0].id)


async def _call(
    api: Api,
    objects: Objects,
    route: tuple[str, str, str | None],
    headers: dict[str, str],
) -> httpx.Response:
    method, template, body = route
    path = template.format(hook=objects.hook, delivery=objects.delivery)
    payload = None if body is None else BODIES[body]
    return await api.http.request(method, path, json=payload, headers=headers)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("caller", CALLERS, ids=str)
async def test_without_a_valid_token_every_webhook_route_is_401(
    api: Api, objects: Objects, route: tuple[str, str, str | None], caller: str
) -> None:
    response = await _call(api, objects, route, CALLERS[caller]())

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthenticated"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
async def test_a_candidate_may_use_no_webhook_route(
    api: Api, objects: Objects, route: tuple[str, str, str | None]
) -> None:
    response = await _call(api, objects, route, auth("candidate"))

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if "{hook}" in r[1]], ids=lambda r: f"{r[0]} {r[1]}"
)
async def test_another_organisations_webhook_is_not_found(
    api: Api, objects: Objects, route: tuple[str, str, str | None]
) -> None:
    response = await _call(api, objects, route, auth(org="globex"))

    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"
    hook = await api.store.get_endpoint("acme", objects.hook)
    assert hook is not None and hook.description == ""  # untouched


async def test_an_organisation_with_endpoints_of_its_own_cannot_redeliver_ours(
    api: Api, objects: Objects
) -> None:
    # Redelivery's query once paired the delivery with any endpoint of the caller's
    # organisation: with one of its own, another organisation reached ours (500).
    await api.http.post(
        "/api/webhooks",
        json={"url": "http://127.0.0.1:9/", "event_types": ["session.completed"]},
        headers=auth(org="globex"),
    )
    before = await api.store.delivery("acme", objects.hook, objects.delivery)

    response = await api.http.post(
        f"/api/webhooks/{objects.hook}/deliveries/{objects.delivery}/redeliver",
        headers=auth(org="globex"),
    )

    assert response.status_code == 404, response.text
    assert await api.store.delivery("acme", objects.hook, objects.delivery) == before


async def test_another_organisations_list_does_not_show_this_ones_webhooks(
    api: Api, objects: Objects
) -> None:
    theirs = await api.http.get("/api/webhooks", headers=auth(org="globex"))
    ours = await api.http.get("/api/webhooks", headers=auth())

    assert theirs.json() == {"webhooks": []}
    assert [hook["id"] for hook in ours.json()["webhooks"]] == [objects.hook]


@pytest.mark.parametrize("role", ["recruiter", "admin"])
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
async def test_staff_of_the_organisation_may_use_every_webhook_route(
    api: Api, objects: Objects, route: tuple[str, str, str | None], role: str
) -> None:
    response = await _call(api, objects, route, auth(role))

    assert response.status_code in (200, 201, 202, 204), response.text


async def test_an_id_no_server_could_make_is_not_found(api: Api) -> None:
    response = await api.http.get("/api/webhooks/a%00b", headers=auth())

    assert response.status_code == 404
