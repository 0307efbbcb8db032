"""A registry whose dispensation feed cycles (cursor 5 → 6 → 5 …) or never ends (cursor
growing forever, the same dispensations again): the pull stops on a cursor it has already
seen in this pull or after ``max_pages`` pages, keeps its cursor, feeds the heartbeat only
when a page stored something new, and the uploads still go through.

The registry is the reference registry on loopback behind a small proxy that passes every
request through and rewrites only the ``next`` link of the dispensation pages."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from appliance.services.sync import CURSOR_KEY

pytestmark = pytest.mark.integration


class HostileFeed:
    """A proxy to ``upstream`` that serves the first real page of dispensations for every
    cursor, with a ``next`` cursor from ``step(cursor)``; counts GETs and POSTs."""

    def __init__(self, upstream: str, step) -> None:
        self.upstream, self.step = upstream.rstrip("/"), step
        self.gets = self.posts = 0
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _relay(self, method: str) -> None:
                split = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "accept")}
                feed_page = split.path.endswith("/MedicationDispense") and method == "GET"
                path = split.path.split("/fhir", 1)[-1] if "/fhir" in split.path else split.path
                query = "_cursor=0&_count=100" if feed_page else split.query
                answer = httpx.request(method, f"{feed.upstream}{path}?{query}" if query
                                       else f"{feed.upstream}{path}", content=body or None,
                                       headers=headers, timeout=10)
                data = answer.content
                if feed_page:
                    feed.gets += 1
                    cursor = parse_qs(split.query).get("_cursor", [None])[0]
                    page = answer.json()
                    page["link"] = [link for link in page.get("link", [])
                                    if link.get("relation") != "next"]
                    page["link"].append({"relation": "next", "url": f"{feed.upstream}/"
                                         f"MedicationDispense?_cursor={feed.step(cursor)}"
                                         "&_count=100"})
                    data = json.dumps(page).encode()
                elif method == "POST":
                    feed.posts += 1
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type",
                                                                    "application/fhir+json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._relay("GET")

            def do_POST(self) -> None:
                self._relay("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/fhir"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile(registry_sim):
    made = []

    def start(step):
        feed = HostileFeed(registry_sim.url, step)
        made.append(feed)
        return feed

    yield start
    for feed in made:
        feed.close()


def cycling(cursor: str | None) -> str:
    return {None: "5", "5": "6", "6": "5"}[cursor]


def growing(cursor: str | None) -> str:
    return str(int(cursor or 0) + 1)


def bounded(engine, seconds: float = 20.0):
    """Stop ``engine`` after ``seconds`` whatever happens: a pull that never ends then fails
    its assertions instead of hanging the suite."""
    timer = threading.Timer(seconds, engine.stop)
    timer.daemon = True
    timer.start()
    return engine


def dispensed_then_pending(orders, registry_sim, make_engine):
    """One prescription registered and dispensed, one signed and waiting to be sent."""
    [done] = orders.sign_many()
    assert make_engine(registry_sim.url).push().acknowledged == 1
    registry_sim.db.dispense(done.id)
    [waiting] = orders.sign_many()
    return done, waiting


def test_a_cycling_cursor_ends_the_pull_and_the_uploads_go_on(orders, registry_sim,
                                                               make_engine, hostile, uow):
    done, waiting = dispensed_then_pending(orders, registry_sim, make_engine)
    feed = hostile(cycling)
    engine = bounded(make_engine(feed.url))
    beats = []
    engine.heartbeat = lambda: beats.append(1)
    report = engine.pull()
    assert report.cycle and report.pages == 3 and feed.gets == 3
    assert "le curseur 5 est déjà revenu" in report.error
    assert report.applied == 1 and report.prescriptions == [done.id]
    assert uow.meta.get(CURSOR_KEY) == "6"
    assert len(beats) == 1                         # only the page that stored something
    assert "en boucle" in uow.views.sync_status(datetime.now(UTC)).last_error
    for _ in range(3):                              # push and pull, as the service does
        engine.push()
        beats.clear()
        assert engine.pull().cycle
        assert beats == []                          # nothing new: the watchdog starves
    assert feed.posts == 1 and orders.state(waiting.id) == "registered"
    assert feed.gets == 3 + 3 * 2                   # 6 → 5 → 6 from the kept cursor: 2


def test_an_endless_feed_is_capped_per_pull_and_never_starves_the_uploads(
        orders, registry_sim, make_engine, hostile, uow):
    _, waiting = dispensed_then_pending(orders, registry_sim, make_engine)
    feed = hostile(growing)
    engine = bounded(make_engine(feed.url, max_pages=5))
    beats = []
    engine.heartbeat = lambda: beats.append(1)
    report = engine.pull()
    assert report.capped and not report.cycle and report.pages == 5 and feed.gets == 5
    assert uow.meta.get(CURSOR_KEY) == "5" and len(beats) == 1
    engine.push()
    assert feed.posts == 1 and orders.state(waiting.id) == "registered"
    beats.clear()
    report = engine.pull()
    assert report.capped and report.pages == 5 and uow.meta.get(CURSOR_KEY) == "10"
    assert beats == []                              # the same dispensations again: no beat
