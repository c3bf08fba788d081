"""The sandbox aggregator against the official `twilio` client and Twilio's own OpenAPI schema.

Every test talks to a real server on a free loopback port (`running_sandbox`, in a thread), and
status callbacks and inbound webhooks land on a real receiver (a stdlib HTTP server) that
records them. The twilio client is pointed at the sandbox with `client.api.base_url = url`: the
Api domain builds every Messages URL, next-page links included, from that attribute.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jsonschema
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from smartchat.errors import SmartChatError
from tasks.gateway.reply_script import load_reply_script, parse_reply_script
from tasks.gateway.sandbox import SandboxConfig, running_sandbox
from tasks.gateway.signature import is_valid_signature, twilio_signature

ROOT = Path(__file__).resolve().parents[1]
OPENAPI = Path("/work/shared/reference/twilio_api_v2010_messages.json")
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "test-auth-token"
SENDER = "+15005550006"
SERVICE = "MG" + "ab" * 16
REPLIER, STOPPER = "+525512000001", "+525512000002"
UNREACHABLE, REFUSED = "+525599000001", "+525598000001"
MX = "+5255130"  # + 5 digits: valid Mexican numbers no rule of the reply script mentions

REPLY_SCRIPT = f"""
replies:
  - number: "{REPLIER}"
    after_text: "SI o NO"
    delay: 50ms
    say: "Sí"
  - number: "{STOPPER}"
    delay: 0
    say: STOP
fail:
  - number: "+525599*"
    error_code: 30005
  - number: "{REFUSED}"
    status: failed
"""


# --- a webhook receiver ------------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """Records every POST; answers 500 to the first `fail_next` ones."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[dict[str, Any]] = []
        self.fail_next = 0
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                posts = list(self.posts)
            if predicate(posts):
                return posts
            time.sleep(0.01)
        raise AssertionError(f"timed out; received {posts}")

    def for_sid(self, sid: str, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        def done(posts):
            return len([p for p in posts if p["form"].get("MessageSid") == sid]) >= count

        return [p for p in self.wait_for(done, timeout) if p["form"].get("MessageSid") == sid]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        with self.server.lock:
            failing = self.server.fail_next > 0
            self.server.fail_next -= failing
            self.server.posts.append(
                {
                    "path": self.path,
                    "signature": self.headers["X-Twilio-Signature"],
                    "token": self.headers["I-Twilio-Idempotency-Token"],
                    "form": dict(parse_qsl(body, keep_blank_values=True)),
                    "answered": 500 if failing else 200,
                }
            )
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def fast_config(**changes: Any) -> SandboxConfig:
    settings: dict[str, Any] = {
        "account_sid": ACCOUNT,
        "auth_token": TOKEN,
        "sent_delay": 0.05,
        "delivered_delay": 0.05,
        "callback_backoff": 0.05,
    }
    return SandboxConfig(**(settings | changes))


@pytest.fixture(scope="module")
def sandbox(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    script = tmp_path_factory.mktemp("script") / "replies.yaml"
    script.write_text(REPLY_SCRIPT, encoding="utf-8")
    config = fast_config(reply_script=script, inbound_url=receiver.url("/sms/inbound"))
    with running_sandbox(config) as url:
        yield url


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> None:
    if "sandbox" in request.fixturenames:
        httpx.post(request.getfixturevalue("sandbox") + "/sandbox/reset").raise_for_status()
    if "receiver" in request.fixturenames:
        receiver = request.getfixturevalue("receiver")
        with receiver.lock:
            receiver.posts.clear()
            receiver.fail_next = 0


def twilio_client(url: str, token: str = TOKEN) -> Client:
    client = Client(ACCOUNT, token)
    client.api.base_url = url  # every Messages request and page link is built from it
    return client


@pytest.fixture
def client(sandbox: str) -> Client:
    return twilio_client(sandbox)


def api(url: str) -> httpx.Client:
    return httpx.Client(base_url=f"{url}/2010-04-01/Accounts/{ACCOUNT}", auth=(ACCOUNT, TOKEN))


def send(http: httpx.Client, to: str, body: str = "Hola", **extra: str) -> httpx.Response:
    return http.post("/Messages.json", data={"To": to, "From": SENDER, "Body": body, **extra})


# --- signatures --------------------------------------------------------------------------------


SIGNED_URL = "https://smartchat.example.com/sms/status?campaign=c-1&x=%20y"
PARAMS = {"MessageSid": "SM" + "0" * 32, "Body": "¿Pagarás? Sí ✓", "To": "+525512345678", "A": ""}


def test_signature_is_the_one_twilio_computes():
    validator = RequestValidator(TOKEN)
    assert twilio_signature(TOKEN, SIGNED_URL, PARAMS) == validator.compute_signature(
        SIGNED_URL, PARAMS
    )
    pairs = [("b", "2"), ("a", "x"), ("b", "1")]  # a repeated name: values sorted too
    multi = {"a": ["x"], "b": ["2", "1"]}
    assert twilio_signature(TOKEN, SIGNED_URL, pairs) == twilio_signature(TOKEN, SIGNED_URL, multi)
    assert twilio_signature(TOKEN, SIGNED_URL, None) == validator.compute_signature(SIGNED_URL, {})


def test_signature_check_accepts_twilio_port_variants_and_nothing_else():
    signature = twilio_signature(TOKEN, SIGNED_URL, PARAMS)
    with_port = SIGNED_URL.replace(".com/", ".com:443/")
    assert is_valid_signature(TOKEN, SIGNED_URL, PARAMS, signature)
    assert is_valid_signature(TOKEN, with_port, PARAMS, signature)
    assert is_valid_signature(TOKEN, SIGNED_URL, list(PARAMS.items()), signature)
    assert is_valid_signature(TOKEN, with_port, PARAMS, twilio_signature(TOKEN, with_port, PARAMS))
    assert not is_valid_signature(TOKEN, SIGNED_URL, PARAMS | {"Body": "No"}, signature)
    assert not is_valid_signature("other-token", SIGNED_URL, PARAMS, signature)
    assert not is_valid_signature(TOKEN, SIGNED_URL + "&z=1", PARAMS, signature)
    assert not is_valid_signature(TOKEN, SIGNED_URL, PARAMS, None)


# --- the API through the official client -------------------------------------------------------


def test_twilio_client_sends_lists_pages_and_fetches(client: Client):
    to, other = MX + "00001", MX + "00002"
    sent = [client.messages.create(to=to, from_=SENDER, body=f"n{i}") for i in range(5)]
    client.messages.create(to=other, from_=SENDER, body="other")
    first = sent[0]
    assert first.status == "queued" and first.direction == "outbound-api"
    assert first.sid.startswith("SM") and len(first.sid) == 34 and first.account_sid == ACCOUNT
    assert first.date_sent is None and first.price is None and first.error_code is None

    listed = client.messages.list(to=to, page_size=2)  # three pages, followed by next_page_uri
    assert [m.body for m in listed] == ["n4", "n3", "n2", "n1", "n0"]  # newest first
    page = client.messages.page(to=to, page_size=2)
    second = page.next_page()
    assert [m.body for m in second] == ["n2", "n1"]
    assert [m.body for m in second.previous_page()] == ["n4", "n3"]
    assert second.next_page().next_page() is None
    assert [m.body for m in client.messages.list(from_=SENDER, limit=2)] == ["other", "n4"]

    time.sleep(0.15)  # sent_delay + delivered_delay
    fetched = client.messages(first.sid).fetch()
    assert fetched.status == "delivered" and fetched.body == "n0"
    assert fetched.date_sent is not None and fetched.date_updated >= fetched.date_created
    with pytest.raises(TwilioRestException) as missing:
        client.messages("SM" + "f" * 32).fetch()
    assert (missing.value.status, missing.value.code) == (404, 20404)


def test_list_filters_on_date_sent(client: Client):
    message = client.messages.create(to=MX + "00003", from_=SENDER, body="dated")
    time.sleep(0.1)
    today = datetime.now(UTC)
    mine = {"to": MX + "00003"}
    assert [m.sid for m in client.messages.list(date_sent=today.date(), **mine)] == [message.sid]
    assert client.messages.list(date_sent_before=today - timedelta(days=1), **mine) == []
    assert len(client.messages.list(date_sent_after=today - timedelta(minutes=1), **mine)) == 1
    assert client.messages.list(date_sent_after=today + timedelta(minutes=1), **mine) == []


def test_wrong_credentials_are_refused_with_twilio_20003(sandbox: str):
    with pytest.raises(TwilioRestException) as refused:
        twilio_client(sandbox, token="wrong").messages.create(to=MX + "1", from_=SENDER, body="x")
    assert (refused.value.status, refused.value.code) == (401, 20003)
    answer = httpx.get(f"{sandbox}/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
    assert answer.status_code == 401
    assert answer.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"To": "+1555"}, 21211),
        ({"To": "5512345678"}, 21211),  # no +country code
        ({"To": "+4407400123456"}, 21211),  # a trunk 0 after the country code
        ({"To": "+52 55 1234 5678"}, 21211),
        ({"To": ""}, 21604),
        ({"Body": ""}, 21602),
        ({"Body": "a" * 1601}, 21617),
        ({"From": ""}, 21603),
        ({"MessagingServiceSid": "MG123", "From": ""}, 21705),
        ({"StatusCallback": "ftp://x"}, 21609),
    ],
)
def test_invalid_sends_get_twilio_errors(sandbox: str, form: dict[str, str], code: int):
    with api(sandbox) as http:
        answer = http.post(
            "/Messages.json", data={"To": MX + "00099", "From": SENDER, "Body": "x"} | form
        )
        assert answer.status_code == 400
        assert answer.json()["code"] == code
        assert answer.json()["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
        assert http.get("/Messages.json").json()["messages"] == []  # nothing was stored


def test_invalid_to_raises_21211_in_the_twilio_client(client: Client):
    with pytest.raises(TwilioRestException) as refused:
        client.messages.create(to="+1555", from_=SENDER, body="x")
    assert (refused.value.status, refused.value.code) == (400, 21211)


def openapi_validator(schema_name: str | None = None, response: str | None = None) -> Any:
    """A jsonschema validator from Twilio's OpenAPI 3.0 file (`nullable` turned into null types,
    Twilio's formats checked), for a component schema or a response of the list operation."""
    spec = json.loads(OPENAPI.read_text(encoding="utf-8"))

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {k: convert(v) for k, v in node.items() if k not in ("nullable", "examples")}
        if node.get("nullable") and "type" in node:
            out["type"] = [node["type"], "null"]
        return out

    converted = convert(spec)
    if response is not None:
        operation = converted["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["get"]
        root = operation["responses"]["200"]["content"]["application/json"]["schema"]
    else:
        root = {"$ref": f"#/components/schemas/{schema_name}"}
    checker = jsonschema.FormatChecker()

    @checker.checks("date-time-rfc-2822")
    def rfc2822(value: object) -> bool:
        if not isinstance(value, str):  # formats constrain strings only; null is typed apart
            return True
        return parsedate_to_datetime(value).utcoffset() == timedelta(0)

    @checker.checks("phone-number")
    def phone(value: object) -> bool:
        return not isinstance(value, str) or (value.startswith("+") and value[1:].isdigit())

    schema = root | {"components": converted["components"]}
    return jsonschema.Draft202012Validator(schema, format_checker=checker)


def test_answers_validate_against_twilio_openapi_schema(sandbox: str):
    message_schema = openapi_validator("api.v2010.account.message")
    properties = set(
        message_schema.schema["components"]["schemas"]["api.v2010.account.message"]["properties"]
    )
    with api(sandbox) as http:
        created = send(http, MX + "00004", "Hola", StatusCallback="http://127.0.0.1:9/cb").json()
        via_service = http.post(
            "/Messages.json", data={"To": MX + "00004", "MessagingServiceSid": SERVICE, "Body": "x"}
        ).json()
        time.sleep(0.15)
        fetched = http.get(f"/Messages/{created['sid']}.json").json()
        page = http.get("/Messages.json", params={"To": MX + "00004", "PageSize": 1}).json()
    for resource in (created, via_service, fetched, *page["messages"]):
        message_schema.validate(resource)
        assert set(resource) == properties
    openapi_validator(response="list").validate(page)
    assert created["status"] == "queued" and created["num_segments"] == "1"
    assert created["num_media"] == "0" and created["api_version"] == "2010-04-01"
    assert created["uri"] == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{created['sid']}.json"
    # With only a Messaging Service, Twilio answers `accepted`, no sender and 0 segments yet.
    assert (via_service["status"], via_service["from"], via_service["num_segments"]) == (
        "accepted",
        None,
        "0",
    )
    assert fetched["status"] == "delivered" and fetched["date_sent"] is not None
    assert page["page_size"] == 1 and page["next_page_uri"] and page["previous_page_uri"] is None


@pytest.mark.parametrize(
    ("body", "parts"),
    [("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3), ("á" * 70, 1), ("á" * 71, 2)]
    + [("😀" * 36, 2), ("¿Niño? ¡Él!" * 10, 1)],
)
def test_num_segments_follow_gsm7_and_ucs2(sandbox: str, body: str, parts: int):
    with api(sandbox) as http:
        assert send(http, MX + "00005", body).json()["num_segments"] == str(parts)


# --- rate limit and faults ---------------------------------------------------------------------


def test_above_the_rate_sends_get_429_with_retry_after():
    with running_sandbox(fast_config(rate=5)) as url, api(url) as http:
        answers = [send(http, MX + "00006") for _ in range(20)]
        codes = [a.status_code for a in answers]
        assert 5 <= codes.count(201) <= 7 and codes.count(429) >= 13  # 5 at once, then 5 a second
        refused = next(a for a in answers if a.status_code == 429)
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["code"] == 20429
        stored = http.get("/Messages.json", params={"PageSize": 100}).json()["messages"]
        assert len(stored) == codes.count(201)
        with pytest.raises(TwilioRestException) as limited:
            twilio_client(url).messages.create(to=MX + "00006", from_=SENDER, body="x")
        assert (limited.value.status, limited.value.code) == (429, 20429)


def set_faults(url: str, **settings: Any) -> dict[str, Any]:
    answer = httpx.post(f"{url}/sandbox/faults", json=settings)
    answer.raise_for_status()
    return dict(answer.json())


def test_faults_hit_the_configured_share_and_are_not_stored(sandbox: str):
    set_faults(sandbox, fail_rate=0.3, kinds=["5xx", "drop"], seed=11)
    outcomes: list[int | str] = []
    with api(sandbox) as http:
        for i in range(300):
            try:
                outcomes.append(send(http, MX + "00007", f"m{i}").status_code)
            except (httpx.RemoteProtocolError, httpx.ReadError):  # closed, or reset: no answer
                outcomes.append("drop")
        stored = http.get("/Messages.json", params={"To": MX + "00007", "PageSize": 1000}).json()
    faults = [o for o in outcomes if o != 201]
    assert 0.22 <= len(faults) / len(outcomes) <= 0.38
    assert {"drop", 500, 503} <= set(faults) <= {"drop", 500, 503}
    assert len(stored["messages"]) == outcomes.count(201)  # a 5xx or a drop stored nothing
    report = httpx.get(f"{sandbox}/sandbox/faults").json()
    assert report["injected"]["drop"] == outcomes.count("drop")
    assert report["injected"]["5xx"] == outcomes.count(500) + outcomes.count(503)


def test_accepted_faults_store_the_message_though_the_answer_is_lost(sandbox: str):
    set_faults(sandbox, next=["drop-accepted", "5xx-accepted", "slow", "429"], slow_seconds=0.2)
    to = MX + "00008"
    with api(sandbox) as http:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            send(http, to, "lost answer")
        assert send(http, to, "500 but sent").status_code == 500
        started = time.monotonic()
        assert send(http, to, "slow").status_code == 201
        assert time.monotonic() - started >= 0.2
        assert send(http, to, "refused").status_code == 429
        assert send(http, to, "normal").status_code == 201
        # The reconciliation a sender does after a lost answer: list what reached the number.
        listed = http.get("/Messages.json", params={"To": to}).json()["messages"]
    assert [m["body"] for m in listed] == ["normal", "slow", "500 but sent", "lost answer"]
    everything = httpx.get(f"{sandbox}/sandbox/messages").json()["messages"]
    assert [m["fault"] for m in everything] == [None, "slow", "5xx-accepted", "drop-accepted"][::-1]
    report = httpx.get(f"{sandbox}/sandbox/faults").json()
    assert [a["kind"] for a in report["accepted"]] == ["drop-accepted", "5xx-accepted", "slow"]


def test_a_429_fault_is_a_burst(sandbox: str):
    set_faults(sandbox, fail_rate=1.0, kinds=["429"], burst_429=3)
    with api(sandbox) as http:
        answers = [send(http, MX + "00009") for _ in range(3)]
    assert all(a.status_code == 429 and a.headers["Retry-After"] == "1" for a in answers)
    assert httpx.get(f"{sandbox}/sandbox/faults").json()["injected"]["429"] == 3


def test_fault_settings_are_checked(sandbox: str):
    answer = httpx.post(f"{sandbox}/sandbox/faults", json={"kinds": ["meteor"]})
    assert answer.status_code == 400 and "kinds are among" in answer.json()["message"]
    with pytest.raises(SmartChatError, match="fail_rate"):
        SandboxConfig(fail_rate=2)


# --- status callbacks and inbound replies ------------------------------------------------------


def assert_signed(post: dict[str, Any], url: str) -> None:
    assert RequestValidator(TOKEN).validate(url, post["form"], post["signature"])
    assert is_valid_signature(TOKEN, url, post["form"], post["signature"])


def test_status_callbacks_are_signed_and_in_order(client: Client, receiver: Receiver):
    url = receiver.url("/sms/status?campaign=c-1")
    delivered = client.messages.create(to=MX + "00010", from_=SENDER, body="x", status_callback=url)
    undelivered = client.messages.create(
        to=UNREACHABLE, from_=SENDER, body="x", status_callback=url
    )
    failed = client.messages.create(to=REFUSED, from_=SENDER, body="x", status_callback=url)
    via_service = client.messages.create(
        to=MX + "00010", messaging_service_sid=SERVICE, body="x", status_callback=url
    )

    # Like Twilio, no callback for the initial status (queued, or accepted with a service).
    posts = receiver.for_sid(delivered.sid, 2)
    assert [p["form"]["MessageStatus"] for p in posts] == ["sent", "delivered"]
    for post in posts:
        assert post["path"] == "/sms/status?campaign=c-1"
        assert_signed(post, url)
        assert post["form"]["SmsStatus"] == post["form"]["MessageStatus"]
        assert post["form"]["AccountSid"] == ACCOUNT and post["form"]["From"] == SENDER
        assert post["form"]["ApiVersion"] == "2010-04-01" and "ErrorCode" not in post["form"]
    assert len({p["token"] for p in posts}) == 2

    posts = receiver.for_sid(undelivered.sid, 2)
    assert [(p["form"]["MessageStatus"], p["form"].get("ErrorCode")) for p in posts] == [
        ("sent", None),
        ("undelivered", "30005"),
    ]
    posts = receiver.for_sid(failed.sid, 1)
    assert [(p["form"]["MessageStatus"], p["form"]["ErrorCode"]) for p in posts] == [
        ("failed", "30008")
    ]
    posts = receiver.for_sid(via_service.sid, 3)
    assert [p["form"]["MessageStatus"] for p in posts] == ["queued", "sent", "delivered"]
    assert all(p["form"]["MessagingServiceSid"] == SERVICE for p in posts)
    for post in posts:
        assert_signed(post, url)

    # The API shows the status the callbacks told.
    assert client.messages(delivered.sid).fetch().status == "delivered"
    lost = client.messages(undelivered.sid).fetch()
    assert (lost.status, lost.error_code, lost.error_message) == (
        "undelivered",
        30005,
        "Unknown destination handset",
    )
    assert client.messages(failed.sid).fetch().date_sent is None


def test_initial_status_callback_can_be_asked_for(receiver: Receiver):
    url = receiver.url("/sms/status")
    with running_sandbox(fast_config(callback_initial_status=True)) as sandbox:
        sid = (
            twilio_client(sandbox)
            .messages.create(to=MX + "00011", from_=SENDER, body="x", status_callback=url)
            .sid
        )
        posts = receiver.for_sid(sid, 3)
    assert [p["form"]["MessageStatus"] for p in posts] == ["queued", "sent", "delivered"]


def test_callbacks_are_retried_while_the_receiver_fails(client: Client, receiver: Receiver):
    receiver.fail_next = 2
    url = receiver.url("/sms/status")
    sid = client.messages.create(to=MX + "00012", from_=SENDER, body="x", status_callback=url).sid
    posts = receiver.for_sid(sid, 4)  # sent: 500, 500, 200; then delivered: 200
    assert [(p["form"]["MessageStatus"], p["answered"]) for p in posts] == [
        ("sent", 500),
        ("sent", 500),
        ("sent", 200),
        ("delivered", 200),
    ]
    assert len({p["token"] for p in posts[:3]}) == 1  # a retry keeps its idempotency token


def test_callbacks_to_a_receiver_that_is_down_give_up(receiver: Receiver):
    nobody = socket_nobody_listens_on()
    with running_sandbox(fast_config(callback_attempts=3)) as sandbox, api(sandbox) as http:
        send(http, MX + "00013", StatusCallback=f"http://127.0.0.1:{nobody}/sms/status")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            log = httpx.get(f"{sandbox}/sandbox/deliveries").json()["deliveries"]
            if len(log) == 2:
                break
            time.sleep(0.02)
    assert [(d["status"], d["attempts"], d["ok"]) for d in log] == [
        ("sent", 3, False),
        ("delivered", 3, False),
    ]
    assert "Connect" in log[0]["error"]


def socket_nobody_listens_on() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_reply_script_answers_with_a_signed_inbound_webhook(client: Client, receiver: Receiver):
    question = client.messages.create(to=REPLIER, from_=SENDER, body="¿Pagarás? Responde SI o NO")
    posts = receiver.wait_for(lambda posts: any(p["path"] == "/sms/inbound" for p in posts))
    inbound = next(p for p in posts if p["path"] == "/sms/inbound")
    assert_signed(inbound, receiver.url("/sms/inbound"))
    form = inbound["form"]
    assert (form["From"], form["To"], form["Body"]) == (REPLIER, SENDER, "Sí")
    assert form["MessageSid"] == form["SmsSid"] == form["SmsMessageSid"]
    assert form["MessageSid"].startswith("SM") and form["MessageSid"] != question.sid
    assert (form["NumMedia"], form["NumSegments"], form["AccountSid"]) == ("0", "1", ACCOUNT)
    assert (form["FromCountry"], form["ToCountry"], form["ApiVersion"]) == (
        "MX",
        "US",
        "2010-04-01",
    )
    stored = client.messages(form["MessageSid"]).fetch()
    assert (stored.direction, stored.status, stored.body) == ("inbound", "received", "Sí")
    assert [m.direction for m in client.messages.list(from_=REPLIER)] == ["inbound"]

    # The script answers a message containing "SI o NO" once: nothing else is sent back.
    client.messages.create(to=REPLIER, from_=SENDER, body="Gracias")
    time.sleep(0.3)
    assert len([p for p in receiver.posts if p["path"] == "/sms/inbound"]) == 1


def test_a_stop_reply_unsubscribes_the_number(client: Client, receiver: Receiver):
    client.messages.create(to=STOPPER, from_=SENDER, body="Hola")
    receiver.wait_for(lambda posts: any(p["form"].get("Body") == "STOP" for p in posts))
    with pytest.raises(TwilioRestException) as refused:
        client.messages.create(to=STOPPER, from_=SENDER, body="¿Sigues ahí?")
    assert (refused.value.status, refused.value.code) == (400, 21610)


# --- the reply script file ---------------------------------------------------------------------


def test_the_sample_reply_script_loads():
    script = load_reply_script(ROOT / "data" / "sample-reply-script.yaml")
    assert len(script.replies) == 6 and len(script.fail) == 3


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ('replies:\n  - number: "+52*"\n    sya: hi\n', 3, "replies[0].sya", "mean 'say'"),
        ('replies:\n  - number: "52155"\n    say: hola\n', 2, "replies[0].number", "prefix"),
        ('replies:\n  - number: "*"\n    after: 1st\n    say: x\n', 3, "replies[0].after", "whole"),
        ('replies:\n  - number: "*"\n    share: 1.5\n    say: x\n', 3, "replies[0].share", "0.3"),
        ('replies:\n  - number: "*"\n    delay: soon\n    say: x\n', 3, "replies[0].delay", "2s"),
        ('replies:\n  - number: "*"\n', 2, "replies[0].say", "missing"),
        ('replies:\n  - number: "*"\n    say: []\n', 3, "replies[0].say", "empty"),
        ('fail:\n  - number: "+1*"\n    status: lost\n', 3, "fail[0].status", "undelivered"),
        ('fail:\n  - number: "+1*"\n    error_code: 3\n', 3, "fail[0].error_code", "10000"),
        ('replys:\n  - number: "*"\n', 1, "replys", "did you mean 'replies'"),
    ],
)
def test_a_malformed_reply_script_is_refused_naming_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, words: str
):
    path = tmp_path / "replies.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SmartChatError) as refused:
        load_reply_script(path)
    message = str(refused.value)
    assert f"{path}, line {line}, field '{field}'" in message
    assert words in message


def test_reply_script_yaml_errors_name_the_line():
    with pytest.raises(SmartChatError, match=r"s.yaml, line 3: .*twice"):
        parse_reply_script('replies:\n  - number: "*"\n    number: "+1*"\n', source="s.yaml")
    with pytest.raises(SmartChatError, match=r"s.yaml, line 2: not valid YAML"):
        parse_reply_script('replies:\n\t- number: "*"\n', source="s.yaml")
    with pytest.raises(SmartChatError, match="empty"):
        parse_reply_script("# nothing\n", source="s.yaml")
    with pytest.raises(SmartChatError, match="no such reply script"):
        load_reply_script(ROOT / "data" / "no-such-script.yaml")


def test_reply_values_stay_the_text_the_contact_types():
    script = parse_reply_script('replies:\n  - number: "*"\n    say: [no, 1, 010, "sí"]\n')
    assert script.replies[0].say == ("no", "1", "010", "sí")


def test_basic_auth_header_is_checked_not_just_compared(sandbox: str):
    credentials = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    path = f"{sandbox}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    form = {"To": MX + "00014", "From": SENDER, "Body": "x"}
    assert httpx.post(
        path, data=form, headers={"Authorization": f"basic  {credentials}"}
    ).is_success
    other = "AC" + "9" * 32
    answer = httpx.get(path.replace(ACCOUNT, other), auth=(ACCOUNT, TOKEN))
    assert (answer.status_code, answer.json()["code"]) == (404, 20404)


def test_a_sandbox_in_its_own_process_for_benchmarks(tmp_path: Path):
    with running_sandbox(fast_config(), process=True) as url:
        message = twilio_client(url).messages.create(to=MX + "00015", from_=SENDER, body="x")
        assert message.status == "queued"
    bad = tmp_path / "bad.yaml"
    bad.write_text('replies:\n  - number: "*"\n', encoding="utf-8")
    with pytest.raises(SmartChatError, match="line 2, field 'replies"):
        with running_sandbox(fast_config(reply_script=bad), process=True):
            pass


def test_unsolicited_texts_arrive_once_after_the_first_message(receiver: Receiver, tmp_path: Path):
    """A number nobody wrote to texts in: posted like any inbound message, signed."""
    script = tmp_path / "unsolicited.yaml"
    script.write_text(
        'unsolicited:\n  - from: "+525588880000"\n    say: "¿Quién es?"\n    delay: 50ms\n'
    )
    config = fast_config(reply_script=script, inbound_url=receiver.url("/sms/inbound"))
    with running_sandbox(config) as url:
        client = twilio_client(url)
        client.messages.create(to=REPLIER, from_=SENDER, body="Hola")
        client.messages.create(to=REPLIER, from_=SENDER, body="Hola otra vez")
        posts = receiver.wait_for(
            lambda posts: any(p["form"].get("From") == "+525588880000" for p in posts)
        )
        time.sleep(0.2)
    unsolicited = [p for p in receiver.posts if p["form"].get("From") == "+525588880000"]
    assert len(unsolicited) == 1
    assert_signed(unsolicited[0], receiver.url("/sms/inbound"))
    assert (unsolicited[0]["form"]["To"], unsolicited[0]["form"]["Body"]) == (SENDER, "¿Quién es?")
    assert posts


def test_a_malformed_unsolicited_text_is_refused_with_its_line():
    with pytest.raises(SmartChatError, match=r"line 2, field 'unsolicited\[0\]\.from'"):
        parse_reply_script('unsolicited:\n  - from: "5588880000"\n    say: hola\n', "s.yaml")
