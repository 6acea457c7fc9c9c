"""The gateway's playground page in a real browser: Debian's Chromium, headless, driven by Selenium
through the system chromedriver. It loads the page, speaks a sentence with a registered voice and
checks that the audio played; it uploads a voice with its transcript and speaks with it. A
screenshot of each is kept in the test's temporary directory (its path is printed)."""

from __future__ import annotations

import shutil

import pytest

from export.repository import REFERENCE_TEXT, REFERENCE_WAV

from conftest import GATEWAY_KEY, VOICE, _say

pytestmark = pytest.mark.slow  # a browser (Chromium starts in ~10 s per test)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 120  # seconds: a bound for a hung page, not a measurement


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), f"{path} is missing: `make setup` installs Debian's chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1000,1100"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(lambda d: d.execute_script(f"return {condition}"))


def _open(browser, gateway):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{gateway.url}/")
    browser.execute_script("localStorage.clear()")  # the page keeps the key it was given: start without one
    browser.refresh()
    _wait(browser, "window.playgroundReady === true")
    # The gateway wants a key: the page says so until one is given in its API key field.
    assert "missing API key" in browser.find_element(By.ID, "voice-status").text
    browser.find_element(By.CSS_SELECTOR, "details summary").click()
    browser.find_element(By.ID, "api-key").send_keys(GATEWAY_KEY, Keys.TAB)  # change event: voices reload
    _wait(browser, "document.querySelectorAll('#voice option').length > 0")
    assert browser.find_element(By.ID, "voice-status").text == ""  # the key's error is gone


def _speak(browser):
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "speak").click()  # a real click: the user gesture that lets audio play
    _wait(browser, "!window.playground.running")
    state = browser.execute_script("return window.playground")
    assert state["error"] is None, state["error"]
    return state, browser.find_element(By.ID, "speak-status").text


def test_the_playground_speaks_with_a_registered_voice(browser, gateway, tmp_path_factory, request):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, gateway)
    picker = Select(browser.find_element(By.ID, "voice"))
    assert [o.text for o in picker.options] == [f"{VOICE} (registered)"]
    picker.select_by_value(VOICE)
    browser.find_element(By.ID, "seed").send_keys("7")
    browser.find_element(By.ID, "nfe").send_keys("8")
    state, status = _speak(browser)
    assert state["done"] and state["firstAudioMs"] > 0
    assert state["receivedSeconds"] > 1.0
    assert state["playedSeconds"] == pytest.approx(state["receivedSeconds"], abs=0.01)  # every piece played
    assert status.startswith(f"Played {state['playedSeconds']:.2f} s of audio; first audio after ")
    shown = browser.find_element(By.ID, "first-audio").text
    assert shown.endswith(" ms") and abs(int(shown[:-3]) - state["firstAudioMs"]) <= 0.5
    assert browser.find_element(By.ID, "result").get_attribute("hidden") is None  # the replayable WAV
    shot = tmp_path_factory.mktemp("screenshots") / "playground.png"
    assert browser.save_screenshot(str(shot))
    _say(request, f"playground screenshot: {shot}")
    assert "speech: " in gateway.log_text() and "voice nature, pcm" in gateway.log_text()


def test_the_playground_uploads_a_voice_and_speaks_with_it(browser, gateway, tmp_path_factory, request):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, gateway)
    browser.find_element(By.ID, "new-name").send_keys("browser-voice")
    browser.find_element(By.ID, "new-audio").send_keys(str(REFERENCE_WAV))
    browser.find_element(By.ID, "new-transcript").send_keys(REFERENCE_TEXT)
    browser.find_element(By.ID, "upload").click()
    _wait(browser, "document.getElementById('voice').value === 'browser-voice'")
    assert browser.find_element(By.ID, "voice-status").text == "Voice 'browser-voice' added (5.3 s)."
    assert (gateway.voices_dir / "browser-voice" / "audio.wav").is_file()
    browser.find_element(By.ID, "nfe").send_keys("8")
    state, _ = _speak(browser)
    assert state["playedSeconds"] > 0
    # a bad upload shows the gateway's message on the page
    browser.find_element(By.ID, "upload").click()
    _wait(browser, "document.getElementById('voice-status').textContent.includes('already exists')")
    shot = tmp_path_factory.mktemp("screenshots") / "playground-upload.png"
    assert browser.save_screenshot(str(shot))
    _say(request, f"playground screenshot: {shot}")
    assert [o.text for o in Select(browser.find_element(By.ID, "voice")).options] == [
        f"{VOICE} (registered)", "browser-voice (library)"]
