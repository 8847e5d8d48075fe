"""The web page in a real headless Chromium, served by a real daemon listening to a file
(paced like a microphone) with the trained test model: live scores move, an event's
clip plays, a search finds the inserted sound's time, a trigger is switched off.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from listener.history.store import iso_ts
from tests.fixtures_broker import wait_until
from tests.fixtures_daemon import DEFAULTS, Proc, file_source, make_stream, trigger
from tests.helpers import free_port, write_config

ALARM_AT = 6.0  # stream seconds of the inserted alarm


def web_config(d: Path, model: Path, wav: str, port: int, realtime: bool = True,
               **web: Any) -> Path:
    return write_config(
        d, model, [trigger("alarm"), trigger("siren")],
        source=file_source(wav, realtime), audio={"hop_seconds": 1.0}, defaults=DEFAULTS,
        mqtt={"enabled": False}, clips={"enabled": True, "pre_seconds": 1.0,
                                        "post_seconds": 1.0},
        web={"enabled": True, "port": port, **web},
        logging={"level": "info"}, state_dir="state")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_until(check, timeout, what, interval=0.1)


def page_daemon(d: Path, model: Path, procs: list, events: list[tuple[str, float]],
                seconds: float, **web: Any) -> tuple[Proc, str]:
    """A daemon with the page on, on a paced stream with ``events``; (it, the page's URL)."""
    wav = make_stream(d, "stream.wav", events, seconds)
    port = free_port()
    web_config(d, model, wav, port, **web)
    p = Proc(d)
    procs.append(p)
    p.wait_log(lambda ln: ln.get("event") == "web page", 60, "the web page")
    return p, f"http://127.0.0.1:{port}"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--window-size=900,1400"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_shows_live_scores_plays_clips_searches_and_switches(
        tmp_path: Path, hearing_model_dir: Path, procs, browser):
    p, base = page_daemon(tmp_path, hearing_model_dir, procs,
                          [("alarm", ALARM_AT), ("siren", 24.0)], 40.0)
    browser.get(base + "/")

    # live: the alarm's bar follows its score window after window
    def alarm_scores() -> set[str]:
        rows = browser.find_elements(By.CSS_SELECTOR, '.trigger[data-name="alarm"]')
        return {rows[0].get_attribute("data-score")} if rows else set()
    seen: set[str] = set()
    wait_for(lambda: seen.update(alarm_scores()) or len(seen - {None}) >= 3, 40,
             "three different live alarm scores")
    assert browser.find_element(By.ID, "conn").text == "live"

    # an event with its clip: the audio element loads the WAV
    item = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "details.event"), 40,
                    "an ended event in the list")[0]
    item.find_element(By.TAG_NAME, "summary").click()
    audio = wait_for(lambda: item.find_elements(By.CSS_SELECTOR, "audio.clip"), 10,
                     "the event's audio element")[0]
    duration = wait_for(lambda: browser.execute_script(
        "return arguments[0].readyState >= 1 && arguments[0].duration", audio), 20,
        "the clip's metadata loaded")
    assert duration > 1.0
    # search by example: the event's clip finds moments (the audio tower, in the daemon)
    item.find_element(By.CSS_SELECTOR, "button.similar").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#results li.span"), 30,
             "moments like the clip")
    browser.execute_script("document.querySelector('#results').replaceChildren()")

    # search by words: the best span holds the alarm's time
    start = next(e for e in get_json(base + "/api/events?trigger=alarm&type=start")["events"])
    t0 = iso_ts(start["time"]) - start["window_end"]  # wall time of stream second 0
    browser.find_element(By.ID, "q").send_keys("an alarm beeping")
    browser.find_element(By.CSS_SELECTOR, "#search button").click()
    best = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#results li.span"), 30,
                    "search results")[0]
    lo, hi = float(best.get_attribute("data-start-ts")), float(best.get_attribute("data-end-ts"))
    assert lo - 1.0 <= t0 + ALARM_AT <= hi + 1.0, (lo - t0, hi - t0)

    # the switch: siren off, through the same store MQTT uses (persisted)
    box = browser.find_element(By.CSS_SELECTOR, '.trigger[data-name="siren"] input.switch')
    assert box.is_selected()
    box.click()
    wait_for(lambda: not next(t for t in get_json(base + "/api/status")["triggers"]
                              if t["name"] == "siren")["enabled"], 20, "siren switched off")
    stored = json.loads((tmp_path / "state" / "switches.json").read_text())
    assert stored["siren"]["enabled"] is False
    p.wait_log(lambda ln: ln.get("event") == "trigger switched" and ln.get("by") == "web", 10,
               "the switch in the log")

    # an open page (its live stream) does not hold the daemon up at SIGTERM
    p.signal(signal.SIGTERM)
    assert p.wait(30) == 0, p.text()[-3000:]
