"""`pocketrec demo`: its JSON API over real HTTP, and the page driven in headless Chromium."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pocketrec import PocketrecError, Recommendation, Recommender
from pocketrec._demo import DemoServer, make_server, serve
from pocketrec._demo_app import display_title

HISTORY = ["item3", "item17", "item5", "item12", "item8"]


@pytest.fixture(scope="module")
def rec(tiny_bundle: Path) -> Recommender:
    return Recommender.from_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def server(rec: Recommender) -> Iterator[DemoServer]:
    server = make_server(rec, port=0)  # 0: a free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def call(
    server: DemoServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, http.client.HTTPResponse]:
    """One request; returns (status, decoded JSON or text, response)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = {"Content-Type": "application/json"} if data is not None else {}
    sent.update(headers or {})
    conn.request(method, path, body=data, headers=sent)
    response = conn.getresponse()
    payload = response.read().decode()
    conn.close()
    if response.getheader("Content-Type", "").startswith("application/json"):
        return response.status, json.loads(payload), response
    return response.status, payload, response


def expected(recs: list[Recommendation]) -> list[tuple[str, str, float, list[int]]]:
    return [
        (r.item_id, display_title(r.metadata, r.item_id), r.log_prob, list(r.semantic_id))
        for r in recs
    ]


def got(answer: dict[str, Any]) -> list[tuple[str, str, float, list[int]]]:
    return [
        (r["item_id"], r["title"], r["log_prob"], r["semantic_id"])
        for r in answer["recommendations"]
    ]


# --- the JSON API ---------------------------------------------------------------------------


def test_info_describes_the_bundle(server: DemoServer, rec: Recommender) -> None:
    status, info, _ = call(server, "GET", "/api/info")
    assert status == 200
    assert info["bundle"] == rec.manifest.name
    assert info["num_items"] == len(rec.item_ids) == 40
    assert info["k_max"] == 40 and info["k_default"] == 10


def test_items_are_listed_in_catalogue_order_page_by_page(
    server: DemoServer, rec: Recommender
) -> None:
    status, page, _ = call(server, "GET", "/api/items?offset=30&limit=15")
    assert status == 200
    assert page["total"] == 40
    assert [i["item_id"] for i in page["items"]] == list(rec.item_ids[30:40])
    row = rec.item_ids.index(page["items"][0]["item_id"])
    assert page["items"][0]["title"] == rec._bundle.metadata[row]["title"]
    _, first, _ = call(server, "GET", "/api/items")
    assert [i["item_id"] for i in first["items"]] == list(rec.item_ids)  # default page: 50


def test_search_matches_every_word_of_the_query(server: DemoServer, rec: Recommender) -> None:
    titles = {i: m["title"] for i, m in zip(rec.item_ids, rec._bundle.metadata, strict=True)}
    status, page, _ = call(server, "GET", "/api/items?q=SHAMPOO")
    assert status == 200
    assert [i["item_id"] for i in page["items"]] == [i for i, t in titles.items() if "shampoo" in t]
    assert page["total"] == 10
    _, both, _ = call(server, "GET", "/api/items?q=brand3%20shampoo")
    assert {i["brand"] for i in both["items"]} == {"Brand3"}
    assert all("shampoo" in i["title"] for i in both["items"]) and both["total"] == 2
    _, exact, _ = call(server, "GET", "/api/items?q=item1")
    assert exact["items"][0]["item_id"] == "item1"  # an exact id first, then item10..item19
    assert exact["total"] == 11
    _, none, _ = call(server, "GET", "/api/items?q=no-such-thing")
    assert none["total"] == 0 and none["items"] == []


@pytest.mark.parametrize(
    ("history", "k"),
    [([], 10), (["item3"], 1), (HISTORY, 10), (["item3", "item3", "item9"], 5), (HISTORY, 40)],
)
def test_recommend_equals_the_sdk(
    server: DemoServer, rec: Recommender, history: list[str], k: int
) -> None:
    status, answer, _ = call(server, "POST", "/api/recommend", {"history": history, "k": k})
    assert status == 200
    assert got(answer) == expected(rec.recommend(history, k=k))  # ids, order, exact scores
    assert answer["history"] == history and answer["personalized"] is False
    assert answer["adapter"] is None and answer["fit_ms"] is None
    assert answer["latency_ms"] >= answer["recommend_ms"] > 0


def test_personalization_equals_an_adapter_fitted_on_the_history(
    server: DemoServer, rec: Recommender
) -> None:
    body = {"history": HISTORY, "k": 10, "personalize": True}
    status, answer, _ = call(server, "POST", "/api/recommend", body)
    assert status == 200
    personal = rec.with_adapters(rec.fit_adapter(HISTORY)).recommend(HISTORY, k=10)
    assert got(answer) == expected(personal)
    assert got(answer) != expected(rec.recommend(HISTORY, k=10))  # the toggle does something
    assert answer["personalized"] is True
    assert answer["adapter"]["active"] is True and answer["adapter"]["num_events"] == 5
    assert answer["latency_ms"] >= answer["fit_ms"] > 0

    _, short, _ = call(
        server, "POST", "/api/recommend", {"history": ["item3"], "personalize": True}
    )
    assert short["adapter"]["active"] is False  # too short to fit: a neutral adapter
    assert got(short) == expected(rec.recommend(["item3"], k=10))


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"history": ["item3", "nope", "zzz", "nope"]}, 400, "2 history items are not in"),
        ({"history": [], "k": 0}, 400, "k must be an integer in [1, 40], got 0"),
        ({"history": [], "k": 41}, 400, "k must be an integer in [1, 40]"),
        ({"history": [], "k": "5"}, 400, "k must be an integer"),
        ({"history": [], "k": True}, 400, "k must be an integer"),
        ({"history": "item3"}, 400, "history must be a list of item ids"),
        ({"history": [3]}, 400, "history[0] is 3; item ids are strings"),
        ({"history": [], "personalize": "yes"}, 400, "personalize must be true or false"),
        ({"hist": []}, 400, "unknown fields ['hist']"),
        (["item3"], 400, "the body must be a JSON object"),
        ({"history": ["item1"] * 501}, 400, "at most 500"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(
    server: DemoServer, body: Any, status: int, message: str
) -> None:
    got_status, answer, _ = call(server, "POST", "/api/recommend", body)
    assert got_status == status
    assert message in answer["error"]
    assert "Traceback" not in answer["error"]


def test_unknown_ids_are_listed(server: DemoServer) -> None:
    body = {"history": ["item3", "nope", "zzz", "nope"]}
    _, answer, _ = call(server, "POST", "/api/recommend", body)
    assert answer["unknown_items"] == ["nope", "zzz"]
    assert "'nope', 'zzz'" in answer["error"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "message"),
    [
        ("POST", "/api/recommend", {"raw": b'{"history": ['}, 400, "not valid UTF-8 JSON"),
        ("POST", "/api/recommend", {"raw": b'{"k": NaN}'}, 400, "NaN is not valid JSON"),
        ("POST", "/api/recommend", {"raw": b"\xff\xfe"}, 400, "not valid UTF-8 JSON"),
        ("POST", "/api/recommend", {"raw": b"[" * 100_000 + b"]" * 100_000}, 400, "not valid"),
        (
            "POST",
            "/api/recommend",
            {"raw": b"{}", "headers": {"Content-Length": "\u00b2"}},  # isdigit(), not int()
            411,
            "Content-Length is required",
        ),
        (
            "POST",
            "/api/recommend",
            {"raw": b"history=item3", "headers": {"Content-Type": "text/plain"}},
            415,
            "Content-Type: application/json",
        ),
        ("GET", "/api/recommend", {}, 405, "use POST"),
        ("POST", "/api/items", {"body": {}}, 405, "use GET"),
        ("GET", "/api/items?offset=-1", {}, 400, "offset must be an integer >= 0, got '-1'"),
        ("GET", "/api/items?limit=1000", {}, 400, "limit must be an integer in [1, 200]"),
        ("GET", "/api/items?limit=ten", {}, 400, "limit must be an integer"),
        ("GET", "/api/items?page=2", {}, 400, "unknown query parameters ['page']"),
        ("GET", "/api/items?q=a&q=b", {}, 400, "q is given 2 times"),
        ("GET", "/api/items?q=" + "x" * 201, {}, 400, "longer than 200"),
        ("GET", "/etc/passwd", {}, 404, "no page or endpoint"),
        ("GET", "/../demo.js", {}, 404, "no page or endpoint"),
        (
            "GET",
            "/api/info",
            {"headers": {"Host": "attacker.example:80"}},
            403,
            "is not this server",
        ),
    ],
)
def test_bad_http_requests_get_4xx_with_a_message(
    server: DemoServer,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    message: str,
) -> None:
    got_status, answer, response = call(server, method, path, **kwargs)
    assert got_status == status
    assert message in answer["error"]
    if status == 405:
        assert response.getheader("Allow") in ("GET", "POST")


def test_a_failure_inside_is_a_500_without_the_traceback(
    server: DemoServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(body: Any) -> dict[str, Any]:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(server.app, "recommend", broken)
    status, answer, _ = call(server, "POST", "/api/recommend", {"history": []})
    assert status == 500
    assert "secret" not in json.dumps(answer) and "Traceback" not in json.dumps(answer)
    assert "console" in answer["error"]
    assert "secret internal detail" in capsys.readouterr().err  # the server's console has it


def test_the_page_and_its_assets_are_served_from_the_package(server: DemoServer) -> None:
    status, html, response = call(server, "GET", "/")
    assert status == 200 and response.getheader("Content-Type").startswith("text/html")
    assert "default-src 'self'" in response.getheader("Content-Security-Policy")
    for asset, kind in (("/demo.js", "text/javascript"), ("/demo.css", "text/css")):
        asset_status, text, asset_response = call(server, "GET", asset)
        assert asset_status == 200 and asset_response.getheader("Content-Type").startswith(kind)
        assert "http://" not in text and "https://" not in text  # works offline: no CDN
    assert 'src="demo.js"' in html and 'href="demo.css"' in html
    assert "http://" not in html and "https://" not in html
    assert '<label for="search">' in html and '<label for="k">' in html


def test_a_port_in_use_is_an_error_with_a_hint(server: DemoServer, rec: Recommender) -> None:
    with pytest.raises(PocketrecError, match="pick another port with --port"):
        make_server(rec, port=server.port)


def test_serve_prints_the_url_warns_off_loopback_and_stops_on_ctrl_c(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt(self: DemoServer, poll_interval: float = 0.5) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(DemoServer, "serve_forever", interrupt)
    assert serve(rec, port=0) == 0
    out, err = capsys.readouterr()
    assert "at http://127.0.0.1:" in out and "Ctrl-C" in out
    assert "warning" not in err and "stopped" in err

    assert serve(rec, host="0.0.0.0", port=0) == 0
    out, err = capsys.readouterr()
    assert "warning: listening on '0.0.0.0'" in err and "no authentication" in err
    assert "at http://127.0.0.1:" in out

    with pytest.raises(PocketrecError, match="--port must be in"):
        serve(rec, port=70000)


# --- the page in a real browser -------------------------------------------------------------
#
# Selenium with Debian's chromium and chromium-driver packages: the two come from one source
# package, so the driver always matches the browser, and nothing is downloaded at test time (the
# driver path is passed explicitly, so Selenium Manager never runs). Playwright would need its
# own pinned browser build, which `playwright install` cannot fetch without internet.

_SNAPSHOT = """
const list = document.getElementById("recs-list");
return {
  busy: list.getAttribute("aria-busy"),
  history: list.dataset.history === undefined ? null : JSON.parse(list.dataset.history),
  personalized: list.dataset.personalized || null,
  recs: [...list.querySelectorAll(":scope > li")].map((li) => [
    li.dataset.itemId,
    li.querySelector(".title").textContent,
    li.querySelector(".score").textContent,
  ]),
  shownHistory: [...document.querySelectorAll("#history-list > li")].map((li) => [
    li.dataset.itemId,
    li.querySelector(".title").textContent,
  ]),
  status: document.getElementById("personalization-status").textContent,
  latency: document.getElementById("latency").textContent,
  error: document.getElementById("error").hidden ? null
    : document.getElementById("error").textContent,
};
"""


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "no Chromium installed (needs the `chromium` and `chromedriver` commands; on Debian: "
            "apt-get install -y chromium chromium-driver)"
        )
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, chromedriver = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)  # --no-sandbox: CI containers run as root
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    yield driver
    driver.quit()


def _settled(driver: Any, history: list[str], personalized: bool) -> dict[str, Any]:
    """Wait until the page shows recommendations for exactly this history and mode."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    last: dict[str, Any] = {}

    def ready(d: Any) -> dict[str, Any] | None:
        last.update(d.execute_script(_SNAPSHOT))
        done = last["busy"] == "false" and last["history"] == history
        return dict(last) if done and last["personalized"] == str(personalized).lower() else None

    try:
        snapshot: dict[str, Any] = WebDriverWait(driver, 30, poll_frequency=0.05).until(ready)
    except TimeoutException:
        pytest.fail(
            f"the page never showed recommendations for history {history} with "
            f"personalized={personalized}; last state: {last}"
        )
    return snapshot


def _check_shown(snapshot: dict[str, Any], recs: list[Recommendation]) -> None:
    shown = snapshot["recs"]
    assert [(i, t) for i, t, _ in shown] == [
        (r.item_id, display_title(r.metadata, r.item_id)) for r in recs
    ]
    for (_, _, score), r in zip(shown, recs, strict=True):
        assert abs(float(score) - r.log_prob) <= 0.0005 + 1e-9  # shown with 3 decimals


def _click_item(driver: Any, container: str, item_id: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f'#{container} li[data-item-id="{item_id}"] .add').click()


def test_the_page_shows_the_sdks_recommendations(
    browser: Any, server: DemoServer, rec: Recommender
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def personal(history: list[str]) -> list[Recommendation]:
        return rec.with_adapters(rec.fit_adapter(history)).recommend(history, k=10)

    browser.get(server.url)
    snap = _settled(browser, [], personalized=False)
    _check_shown(snap, rec.recommend([], k=10))  # an empty history: the most popular items
    assert "Personalization off" in snap["status"] and "ms" in snap["latency"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#catalogue-list > li")) == 40

    history: list[str] = []
    for item_id in ("item3", "item17", "item5"):
        _click_item(browser, "catalogue-list", item_id)
        history.append(item_id)
        _check_shown(_settled(browser, history, personalized=False), rec.recommend(history))

    # Search, then click a result into the history.
    browser.find_element(By.ID, "search").send_keys("shampoo")
    WebDriverWait(browser, 30).until(
        lambda d: "matching “shampoo”" in d.find_element(By.ID, "catalogue-count").text
    )
    titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#catalogue-list .title")]
    assert len(titles) == 10 and all("shampoo" in t for t in titles)
    _click_item(browser, "catalogue-list", "item14")
    history.append("item14")
    _check_shown(_settled(browser, history, personalized=False), rec.recommend(history))

    # A recommendation clicked goes into the history too.
    top = rec.recommend(history)[0].item_id
    _click_item(browser, "recs-list", top)
    history.append(top)
    snap = _settled(browser, history, personalized=False)
    _check_shown(snap, rec.recommend(history))

    # Remove the second history item.
    browser.find_elements(By.CSS_SELECTOR, "#history-list .remove")[1].click()
    del history[1]
    snap = _settled(browser, history, personalized=False)
    _check_shown(snap, rec.recommend(history))
    meta = dict(zip(rec.item_ids, rec._bundle.metadata, strict=True))
    assert snap["shownHistory"] == [[i, meta[i]["title"]] for i in history]

    # On-device personalization on: an adapter fitted on this history.
    browser.find_element(By.ID, "personalize").click()
    snap = _settled(browser, history, personalized=True)
    _check_shown(snap, personal(history))
    assert personal(history) != rec.recommend(history)  # the toggle changes something
    assert snap["status"].startswith("Personalization on: adapter fitted on 4 history items")
    assert "Fit adapter" in snap["latency"]
    _click_item(browser, "catalogue-list", "item2")
    history.append("item2")
    _check_shown(_settled(browser, history, personalized=True), personal(history))

    browser.find_element(By.ID, "personalize").click()  # and off again
    _check_shown(_settled(browser, history, personalized=False), rec.recommend(history))

    # Nothing on the page failed so far (a blocked asset or a script error would show here).
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []

    # A k the server refuses: its message is shown, and a valid k works again.
    k_input = browser.find_element(By.ID, "k")
    k_input.clear()
    k_input.send_keys("0")
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", k_input)
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(_SNAPSHOT)["error"])
    assert "k must be an integer in [1, 40]" in browser.execute_script(_SNAPSHOT)["error"]
    k_input.clear()
    k_input.send_keys("5")
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", k_input)
    WebDriverWait(browser, 30).until(lambda d: len(d.execute_script(_SNAPSHOT)["recs"]) == 5)
    snap = _settled(browser, history, personalized=False)
    _check_shown(snap, rec.recommend(history, k=5))
    assert snap["error"] is None

    browser.find_element(By.ID, "clear-history").click()
    snap = _settled(browser, [], personalized=False)
    _check_shown(snap, rec.recommend([], k=5))
    assert snap["shownHistory"] == []


def test_any_loopback_address_it_is_bound_to_is_served(rec: Recommender) -> None:

    server = make_server(rec, host="127.0.0.2", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.2", server.port, timeout=60)
        conn.request("GET", "/api/info")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
