"""The gateway's playground page in a real browser: Debian's Chromium, headless, driven by Selenium
through the system chromedriver. It loads the page (which asks for the API key in its key box),
speaks a sentence with a registered voice and checks that the audio played; shows its words as the
captions arrive and marks the one being spoken as it plays (a script's speakers named, nothing marked
after the end or Stop, the server-sent events read whole however the network splits them);
downloads it in each format (the files' own bytes are checked); counts characters and bytes against
the gateway's limits; uploads a voice, clears the form, and deletes a voice only once confirmed;
uploads one without its transcript, shows the server's transcription and saves a correction of it;
fits a 390 px phone and a desktop without sideways scrolling; warns when the server runs the demo model;
offers the server's models (the session's repository has two) and each one's voices.
Screenshots at both widths are kept in one temporary directory (its path is printed)."""

from __future__ import annotations

import json
import shutil

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import FR_MODEL, FRENCH_TEXT, GATEWAY_KEY, VOICE, Gateway, _say

from export.__main__ import request_from_argv
from export.api import export_model
from export.repository import REFERENCE_TEXT, REFERENCE_WAV

pytestmark = pytest.mark.slow  # a browser (Chromium starts in ~10 s per test)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 120  # seconds: a bound for a hung page, not a measurement
# (width, height, mobile): a desktop window, and an iPhone 12-15's CSS viewport
DESKTOP = (1280, 900, False)
PHONE = (390, 844, True)
# The first bytes of each response format (the gateway's encoders: FFmpeg's mp3 muxer writes an ID3v2 tag,
# AAC comes as ADTS frames whose sync word is 12 set bits); pcm has no header.
MAGIC = {"wav": b"RIFF", "mp3": b"ID3", "flac": b"fLaC", "opus": b"OggS", "aac": b"\xff\xf1"}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), f"{path} is missing: `make setup` installs Debian's chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1000,1100",
    ):
        options.add_argument(arg)
    # Downloads after the first one are "automatic" to Chromium (no click of their own): allowed, not asked.
    options.add_experimental_option("prefs", {"profile.default_content_setting_values.automatic_downloads": 1})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory, request):
    d = tmp_path_factory.mktemp("screenshots")
    _say(request, f"playground screenshots: {d}")
    return d


def _wait(driver, condition: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(lambda d: d.execute_script(f"return {condition}"))


def _viewport(browser, width: int, height: int, mobile: bool) -> None:
    """The page's viewport as a device of that size would have it (a phone honours the page's viewport meta)."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile},
    )
    assert browser.execute_script("return window.innerWidth") == width


def _shot(browser, screenshots, name: str) -> None:
    assert browser.save_screenshot(str(screenshots / f"{name}.png"))


def _assert_fits(browser, what: str) -> None:
    """No sideways scrolling, and every visible field and button wholly inside the viewport."""
    width, scroll = browser.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollWidth]"
    )
    assert scroll <= width, f"{what}: the page is {scroll} px wide in a {width} px viewport (sideways scroll)"
    outside = browser.execute_script("""
        const width = document.documentElement.clientWidth;
        return [...document.querySelectorAll('input, select, textarea, button, audio, summary, .banner')]
          .filter((e) => e.getClientRects().length > 0)
          .map((e) => [e.id || e.tagName, e.getBoundingClientRect()])
          .filter(([, r]) => r.left < 0 || r.right > width + 0.5)
          .map(([id, r]) => `${id}: ${r.left.toFixed(1)}..${r.right.toFixed(1)}`);""")
    assert outside == [], f"{what}: outside the {width} px viewport: {outside}"


def _open(browser, gateway, key: str | None = GATEWAY_KEY):
    """The page, fresh, at desktop width; with `key`, given the way a person would after the page's prompt."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.get(f"{gateway.url}/")
    browser.execute_script("localStorage.clear()")  # the page keeps the key it was given: start without one
    browser.refresh()
    _wait(browser, "window.playgroundReady === true")
    if key is None:
        return
    # The gateway wants a key: the page says where it goes, opens that box and puts the cursor in it.
    prompt = browser.find_element(By.ID, "key-prompt")
    assert prompt.is_displayed()
    assert prompt.text.startswith("This gateway needs an API key: type it in the box below")
    assert "Authorization" not in prompt.text
    assert browser.find_element(By.ID, "key-box").get_attribute("open") is not None
    assert browser.execute_script("return document.activeElement.id") == "api-key"
    assert browser.find_elements(By.CSS_SELECTOR, "#voice option") == []
    assert browser.find_element(By.ID, "voice-status").text == "The voices are listed once the API key is accepted."
    browser.switch_to.active_element.send_keys(key, Keys.ENTER)  # Enter commits it: the voices load
    _wait(browser, "document.querySelectorAll('#voice option').length > 0")
    assert not prompt.is_displayed()  # the prompt is gone
    assert browser.find_element(By.ID, "voice-status").text == ""


def _speak(browser):
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "speak").click()  # a real click: the user gesture that lets audio play
    _wait(browser, "!window.playground.running")
    state = browser.execute_script("return window.playground")
    assert state["error"] is None, state["error"]
    return state, browser.find_element(By.ID, "speak-status").text


# Each word the page marks as being spoken, as it happens: [its index among the captions' words, how many
# words are marked then, whether the Speak is still running, performance.now() in seconds].
_RECORD_MARKS = """
window.marks = [];
new MutationObserver((records) => {
  const words = [...document.querySelectorAll('#captions .word')];
  for (const r of records) {
    if (!r.target.classList.contains('speaking')) continue;
    window.marks.push([words.indexOf(r.target), document.querySelectorAll('#captions .speaking').length,
                       window.playground.running, performance.now() / 1000]);
  }
}).observe(document.getElementById('captions'), {subtree: true, attributes: true, attributeFilter: ['class']});
"""


def _captions(browser) -> list[dict]:
    """The captions' words as the page shows them, with their data attributes."""
    return browser.execute_script(
        "return [...document.querySelectorAll('#captions .word')].map((e) => ({word: e.textContent, "
        "start: Number(e.dataset.start), end: Number(e.dataset.end), estimated: e.dataset.estimated}))"
    )


def _model(gateway) -> dict:
    r = httpx.get(f"{gateway.url}/v1/models/f5-tts", headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_the_playground_speaks_with_a_registered_voice(browser, gateway, tiny_repo, screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    # On a phone, a wrong key first: the page says so in the same place.
    browser.get(f"{gateway.url}/")
    browser.execute_script("localStorage.clear()")
    _viewport(browser, *PHONE)
    browser.refresh()
    _wait(browser, "window.playgroundReady === true")
    _assert_fits(browser, "the key prompt on a phone")
    _shot(browser, screenshots, "key-prompt-phone")
    browser.switch_to.active_element.send_keys("not-the-key", Keys.ENTER)
    _wait(browser, "document.getElementById('key-prompt').textContent.includes('did not accept')")
    _open(browser, gateway)
    _shot(browser, screenshots, "key-given-desktop")
    # The page declares its icon inline (no /favicon.ico to miss), and the icon is an image a browser decodes.
    icon = browser.find_element(By.CSS_SELECTOR, "link[rel=icon]").get_attribute("href")
    assert icon.startswith("data:image/svg+xml,")
    assert (
        browser.execute_async_script(
            "const done = arguments[1], img = new Image(); img.onload = () => done(img.naturalWidth);"
            "img.onerror = () => done(0); img.src = arguments[0];",
            icon,
        )
        > 0
    )
    # The session's repository is not the demo model, and the page says nothing about one.
    assert json.loads((tiny_repo / "manifest.json").read_text())["models"]["f5_tts"]["demo_model"] is False
    assert _model(gateway)["demo_model"] is False
    assert not browser.find_element(By.ID, "demo-notice").is_displayed()
    assert browser.execute_script("return window.playground.demoModel") is False

    picker = Select(browser.find_element(By.ID, "voice"))
    assert [o.text for o in picker.options] == [f"{VOICE} (registered)"]
    picker.select_by_value(VOICE)
    browser.find_element(By.ID, "seed").send_keys("7")
    browser.find_element(By.ID, "nfe").send_keys("8")
    state, status = _speak(browser)
    assert state["done"] and state["firstAudioMs"] > 0 and state["seed"] == 7
    assert state["receivedSeconds"] > 1.0
    assert state["playedSeconds"] == pytest.approx(state["receivedSeconds"], abs=0.01)  # every piece played
    assert status.startswith(f"Played {state['playedSeconds']:.2f} s of audio; first audio after ")
    assert status.endswith("(seed 7).")
    shown = browser.find_element(By.ID, "first-audio").text
    assert shown.endswith(" ms") and abs(int(shown[:-3]) - state["firstAudioMs"]) <= 0.5
    assert browser.find_element(By.ID, "result").is_displayed()  # the replayable WAV and its download
    _shot(browser, screenshots, "spoken-desktop")
    assert "speech: " in gateway.log_text() and "voice nature, pcm" in gateway.log_text()


def test_the_playground_captions_the_words_and_marks_the_one_being_spoken(browser, gateway, screenshots):
    """Every word of the text, in order, with its times; while the audio plays the word at the playback
    position is marked (one at a time, in order, the first one first), and none once it has played."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, gateway)
    assert not browser.find_element(By.ID, "captions").is_displayed()  # nothing to show before a Speak
    Select(browser.find_element(By.ID, "voice")).select_by_value(VOICE)
    browser.find_element(By.ID, "nfe").send_keys("8")
    text = browser.find_element(By.ID, "text").get_attribute("value")
    browser.execute_script(_RECORD_MARKS)
    browser.find_element(By.ID, "speak").click()
    _wait(browser, "document.querySelector('#captions .speaking') !== null")
    _shot(browser, screenshots, "captions-desktop")
    _wait(browser, "!window.playground.running")
    state = browser.execute_script("return window.playground")
    assert state["error"] is None and state["done"], state
    _wait(browser, "document.querySelector('#captions .speaking') === null")

    words = _captions(browser)
    assert [w["word"] for w in words] == text.split()
    assert browser.find_element(By.ID, "captions").text == " ".join(text.split())  # no speaker for plain text
    assert {w["estimated"] for w in words} <= {"true", "false"}
    times = [t for w in words for t in (w["start"], w["end"])]
    assert times == sorted(times) and times[0] >= 0 and times[-1] <= state["receivedSeconds"] + 1e-3
    assert all(w["start"] < w["end"] for w in words)

    marks = browser.execute_script("return window.marks")
    marked = [m[0] for m in marks]
    assert marked and marked[0] == 0, marks  # from the first word
    assert marked == sorted(set(marked)), marks  # in order, never back
    assert len(marked) >= len(words) // 2, marks  # followed through the speech, not marked once
    assert all(count == 1 and running for _, count, running, _ in marks), marks
    # Marked as the audio reaches each word: never ahead of it (a late piece may only hold the marks back).
    first = marks[0][3] - words[0]["start"]
    for index, _, _, at in marks:
        assert at - first >= words[index]["start"] - 0.2, (index, at - first, words[index])


def test_the_playground_captions_a_scripts_speakers_and_stop_clears_the_mark(browser, gateway):
    """A script's voice tags: each speaker named before its words. Stop while a word is marked: the audio
    stops, the page says so, and no word stays marked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, gateway)
    Select(browser.find_element(By.ID, "voice")).select_by_value(VOICE)
    browser.find_element(By.ID, "nfe").send_keys("8")
    first, second = "Who is there at this hour?", "Only me, the wind in the trees. Listen to the leaves."
    _type_text(browser, f"[main] {first} [{VOICE}] {second}")
    browser.find_element(By.ID, "speak").click()
    # Received whole and still playing: both speakers are shown, and a word is marked.
    _wait(browser, "window.playground.done && document.querySelector('#captions .speaking') !== null")
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#captions .speaker")] == ["main:", f"{VOICE}:"]
    assert browser.find_element(By.ID, "captions").text == f"main: {first}\n{VOICE}: {second}"
    assert [w["word"] for w in _captions(browser)] == f"{first} {second}".split()
    browser.find_element(By.ID, "stop").click()
    _wait(browser, "!window.playground.running")
    assert browser.find_element(By.ID, "speak-status").text == "Stopped."
    assert browser.execute_script("return window.playground.error") is None
    assert browser.find_element(By.ID, "speak").is_enabled() and not browser.find_element(By.ID, "stop").is_enabled()
    _wait(browser, "document.querySelector('#captions .speaking') === null")
    assert browser.execute_script("return window.playground.playedSeconds") < browser.execute_script(
        "return window.playground.receivedSeconds"
    )


def test_the_playground_reads_caption_events_split_anywhere(browser, gateway):
    """The page's reader of server-sent events, given the gateway's answer (captions and audio) in network
    chunks of 1 to 7 bytes, then an event with CRLF line ends and multibyte UTF-8 (the gateway's JSON is
    ASCII) and an unfinished one: the same events as the answer's lines, and the added one whole."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, gateway)
    Select(browser.find_element(By.ID, "voice")).select_by_value(VOICE)
    extra = {"type": "test", "text": "Grüße, ½ Ω \U0001f642"}
    browser.set_script_timeout(WAIT)
    result = browser.execute_async_script(
        """const [body, extra, done] = arguments;
        (async () => {
          const response = await api('/v1/audio/speech', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
          const answer = await response.text();
          const bytes = new TextEncoder().encode(
            answer + `data: ${JSON.stringify(extra)}\r\n\r\n` + 'data: {"type": "unfini');
          let at = 0, size = 0;
          const chunks = new ReadableStream({pull(c) {
            size = size % 7 + 1;
            if (at >= bytes.length) c.close(); else c.enqueue(bytes.slice(at, at + size));
            at += size;
          }});
          const events = [];
          for await (const event of sseEvents(chunks.getReader())) events.push(event);
          done([answer, events]);
        })().catch((e) => done(String(e)));""",
        {
            "model": "f5-tts",
            "input": "Some call me nature. Others call me mother nature.",
            "voice": VOICE,
            "response_format": "pcm",
            "stream_format": "sse",
            "captions": "json",
            "nfe_step": 8,
        },
        extra,
    )
    assert isinstance(result, list), result  # else the page's error
    answer, events = result
    assert answer.startswith("data: "), answer[:500]
    want = [json.loads(line[len("data: ") :]) for line in answer.split("\n") if line.startswith("data: ")]
    types = [e["type"] for e in want]
    assert types[0] == "speech.captions" and "speech.audio.delta" in types, types
    assert types[-2:] == ["speech.captions.done", "speech.audio.done"], types
    assert events == [*want, extra]


def test_the_playground_downloads_in_the_chosen_format(browser, gateway, tmp_path):
    """WAV is what was played; the other formats are the gateway's encoding of the same request (same seed):
    the lossless ones hold exactly the played samples."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    _open(browser, gateway)
    Select(browser.find_element(By.ID, "voice")).select_by_value(VOICE)
    browser.find_element(By.ID, "nfe").send_keys("8")  # no seed given: the page draws one and keeps it
    state, _ = _speak(browser)
    seed = state["seed"]
    assert isinstance(seed, int) and seed >= 0
    files = {}
    for fmt in ("wav", "flac", "mp3", "opus", "aac", "pcm"):
        Select(browser.find_element(By.ID, "format")).select_by_value(fmt)
        browser.find_element(By.ID, "download").click()
        _wait(browser, f"window.playground.download !== null && window.playground.download.format === '{fmt}'")
        download = browser.execute_script("return window.playground.download")
        assert "error" not in download, download
        path = tmp_path / f"speech-seed{seed}.{fmt}"
        assert download["name"] == path.name
        # Chromium writes NAME.crdownload and renames it when the download is complete.
        WebDriverWait(browser, WAIT, poll_frequency=0.1).until(
            lambda _, path=path, download=download: path.is_file() and path.stat().st_size == download["bytes"]
        )
        files[fmt] = path.read_bytes()
        assert browser.find_element(By.ID, "download-status").text.startswith(f"Saved {path.name} (")
    for fmt, magic in MAGIC.items():
        assert files[fmt].startswith(magic), f"{fmt} starts with {files[fmt][:8]!r}"
    played, rate = sf.read(tmp_path / f"speech-seed{seed}.wav", dtype="int16")
    assert rate == 24000 and played.size / rate == pytest.approx(state["receivedSeconds"], abs=1e-3)
    flac, flac_rate = sf.read(tmp_path / f"speech-seed{seed}.flac", dtype="int16")
    assert flac_rate == rate and np.array_equal(flac, played)  # the same speech, encoded by the gateway
    assert np.array_equal(np.frombuffer(files["pcm"], "<i2"), played)
    for fmt in ("mp3", "opus"):  # lossy: about as long as what was played
        decoded, decoded_rate = sf.read(tmp_path / f"speech-seed{seed}.{fmt}", dtype="int16")
        assert decoded.size / decoded_rate == pytest.approx(played.size / rate, abs=0.1)
    assert f"voice {VOICE}, flac" in gateway.log_text()


def _type_text(browser, value: str) -> tuple[str, bool, bool]:
    """`value` in the text box (all but its last character at once, through an input event, as typing it
    would; the last one typed), then what the counter says, whether it warns, whether Speak is enabled."""
    from selenium.webdriver.common.by import By

    browser.execute_script(
        "const t = document.getElementById('text'); t.value = arguments[0];t.dispatchEvent(new Event('input'));",
        value[:-1],
    )
    browser.find_element(By.ID, "text").send_keys(value[-1])
    counter = browser.find_element(By.ID, "counter")
    warns = "error" in counter.get_attribute("class")
    if warns:
        assert counter.value_of_css_property("color") == "rgba(179, 38, 30, 1)"  # the page's error red
        assert counter.text.endswith(": too long for this server; shorten the text to speak it")
    return counter.text, warns, browser.find_element(By.ID, "speak").is_enabled()


def test_the_playground_counts_characters_and_bytes_against_the_limits(browser, gateway, server, tmp_path, request):
    """Both limits as the gateway states them: its characters (--max-input-chars) and the server's UTF-8
    bytes. A second gateway allows more characters than the bytes hold, so the byte limit binds there."""
    from selenium.webdriver.common.by import By

    limits = _model(gateway)
    chars, max_bytes = limits["max_input_chars"], limits["max_input_bytes"]
    _open(browser, gateway)
    browser.find_element(By.ID, "text").clear()
    browser.find_element(By.ID, "text").send_keys("Grüße, ½ Ω")  # typed: 10 characters, 14 bytes of UTF-8
    assert browser.find_element(By.ID, "counter").text == f"10 / {chars} characters · 14 / {max_bytes} bytes (UTF-8)"
    fit = min(chars, max_bytes)  # ASCII: a byte a character
    assert _type_text(browser, "a" * fit) == (
        f"{fit} / {chars} characters · {fit} / {max_bytes} bytes (UTF-8)",
        False,
        True,
    )
    shown, warns, speak = _type_text(browser, "a" * (chars + 1))
    assert shown.startswith(f"{chars + 1} / {chars} characters") and warns and not speak

    roomy = Gateway(
        [server.grpc_url], tmp_path / "voices", tmp_path / "gateway.log", "--max-input-chars", str(max_bytes)
    )
    try:
        roomy.wait_live()
        _say(request, f"gateway pid {roomy.proc.pid} with --max-input-chars {max_bytes} on {roomy.url}")
        assert _model(roomy)["max_input_chars"] == max_bytes
        _open(browser, roomy)
        # A 4-byte emoji is one character, as the gateway counts them (JavaScript's length says two).
        # chromedriver types only the Basic Multilingual Plane, so the last key is a plain letter.
        emoji = max_bytes // 4 - 1  # with 3 letters: within the bytes
        assert _type_text(browser, "\U0001f642" * emoji + "abc") == (
            f"{emoji + 3} / {max_bytes} characters · {4 * emoji + 3} / {max_bytes} bytes (UTF-8)",
            False,
            True,
        )
        shown, warns, speak = _type_text(browser, "\U0001f642" * (emoji + 2) + "a")  # 4 * emoji + 9 > max_bytes
        assert shown.startswith(f"{emoji + 3} / {max_bytes} characters · {4 * emoji + 9} / {max_bytes} bytes")
        assert warns and not speak
    finally:
        roomy.stop()


def test_the_playground_uploads_a_voice_and_speaks_with_it(browser, gateway, screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    def fill_form():
        browser.find_element(By.ID, "new-name").send_keys("browser-voice")
        browser.find_element(By.ID, "new-audio").send_keys(str(REFERENCE_WAV))
        browser.find_element(By.ID, "new-transcript").send_keys(REFERENCE_TEXT)

    def form_values():
        return [
            browser.find_element(By.ID, i).get_attribute("value") for i in ("new-name", "new-audio", "new-transcript")
        ]

    _open(browser, gateway)
    fill_form()
    browser.find_element(By.ID, "upload").click()
    _wait(browser, "document.getElementById('voice').value === 'browser-voice'")
    assert browser.find_element(By.ID, "voice-status").text == "Voice 'browser-voice' added (5.3 s)."
    assert (gateway.voices_dir / "browser-voice" / "audio.wav").is_file()
    assert form_values() == ["", "", ""]  # cleared for the next voice
    browser.find_element(By.ID, "nfe").send_keys("8")
    state, _ = _speak(browser)
    assert state["playedSeconds"] > 0
    # a bad upload shows the gateway's message on the page, and keeps the form to be corrected
    fill_form()
    browser.find_element(By.ID, "upload").click()
    _wait(browser, "document.getElementById('voice-status').textContent.includes('already exists')")
    assert form_values()[0] == "browser-voice" and form_values()[2] == REFERENCE_TEXT
    _shot(browser, screenshots, "upload-desktop")
    assert [o.text for o in Select(browser.find_element(By.ID, "voice")).options] == [
        f"{VOICE} (registered)",
        "browser-voice (library)",
    ]


def test_the_playground_shows_a_transcribed_voices_transcript_and_saves_a_correction(browser, gateway, screenshots):
    """A voice uploaded without its transcript: the server transcribes it, the page shows the transcript of the
    selected voice, and a correction typed there is stored (PATCH) and shown again on a fresh page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    name = "heard-in-browser"
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}

    def listed() -> dict:
        r = httpx.get(f"{gateway.url}/v1/audio/voices", headers=headers)
        return {v["id"]: v for v in r.json()["data"]}[name]

    def status() -> str:
        return browser.find_element(By.ID, "voice-status").text

    _open(browser, gateway)
    assert not browser.find_element(By.ID, "voice-detail").is_displayed()  # a registered voice: nothing to edit
    transcript_field = browser.find_element(By.ID, "new-transcript")
    assert transcript_field.get_attribute("placeholder") == "leave empty to transcribe it"
    browser.find_element(By.ID, "new-name").send_keys(name)
    browser.find_element(By.ID, "new-audio").send_keys(str(REFERENCE_WAV))
    browser.find_element(By.ID, "upload").click()
    _wait(browser, f"document.getElementById('voice').value === '{name}'")
    heard = listed()
    assert heard["transcript_source"] == "transcribed" and heard["transcript"]
    assert status() == f"Voice '{name}' added (5.3 s). Transcribed as \"{heard['transcript']}\": check it above."
    field = browser.find_element(By.ID, "voice-transcript")
    assert browser.find_element(By.ID, "voice-detail").is_displayed()
    assert field.get_attribute("value") == heard["transcript"]
    assert browser.find_element(By.ID, "transcript-source").text.startswith("Transcribed by the server")
    _viewport(browser, *PHONE)
    _assert_fits(browser, "a library voice's transcript on a phone")
    browser.execute_script("document.getElementById('voice-detail').scrollIntoView()")
    _shot(browser, screenshots, "transcribed-voice-phone")
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    field.clear()
    field.send_keys("Some call me nature.")
    browser.find_element(By.ID, "save-transcript").click()
    _wait(browser, f"document.getElementById('voice-status').textContent === \"Transcript of '{name}' saved.\"")
    assert (listed()["transcript"], listed()["transcript_source"]) == ("Some call me nature.", "given")
    assert browser.find_element(By.ID, "transcript-source").text.startswith("As given")
    field.clear()  # an empty transcript is not sent
    browser.find_element(By.ID, "save-transcript").click()
    assert status() == "Give the transcript: the words spoken in the voice's sample."
    field.send_keys("Mother nature.", Keys.ENTER)  # Enter saves too
    _wait(browser, f"document.getElementById('voice-status').textContent === \"Transcript of '{name}' saved.\"")
    assert listed()["transcript"] == "Mother nature."

    _open(browser, gateway)  # a fresh page: the correction is the gateway's, not this page's
    Select(browser.find_element(By.ID, "voice")).select_by_value(name)
    assert browser.find_element(By.ID, "voice-transcript").get_attribute("value") == "Mother nature."
    Select(browser.find_element(By.ID, "voice")).select_by_value(VOICE)
    assert not browser.find_element(By.ID, "voice-detail").is_displayed()
    assert httpx.delete(f"{gateway.url}/v1/audio/voices/{name}", headers=headers).status_code == 200


def test_the_playground_deletes_a_voice_only_once_confirmed(browser, gateway):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    name = "to-be-deleted"
    with REFERENCE_WAV.open("rb") as f:
        r = httpx.post(
            f"{gateway.url}/v1/audio/voices",
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
            data={"name": name, "transcript": REFERENCE_TEXT},
            files={"audio_sample": f},
        )
    assert r.status_code == 201, r.text
    _open(browser, gateway)

    def listed() -> list[str]:
        r = httpx.get(f"{gateway.url}/v1/audio/voices", headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
        return [v["id"] for v in r.json()["data"]]

    def delete_and_answer(accept: bool) -> str:
        Select(browser.find_element(By.ID, "voice")).select_by_value(name)
        browser.find_element(By.ID, "delete").click()
        alert = WebDriverWait(browser, WAIT).until(expected_conditions.alert_is_present())
        question = alert.text
        alert.accept() if accept else alert.dismiss()
        return question

    question = delete_and_answer(accept=False)
    assert question == f"Delete the voice '{name}' from the library? This cannot be undone."
    _wait(browser, f"document.getElementById('voice-status').textContent === \"Voice '{name}' kept.\"")
    assert name in listed() and (gateway.voices_dir / name).is_dir()
    delete_and_answer(accept=True)
    _wait(browser, f"document.getElementById('voice-status').textContent === \"Voice '{name}' deleted.\"")
    assert name not in listed() and not (gateway.voices_dir / name).exists()
    assert name not in [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "voice")).options]


def test_the_playground_fits_a_phone_and_a_desktop(browser, gateway, screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, gateway)
    Select(browser.find_element(By.ID, "voice")).select_by_value(VOICE)
    browser.find_element(By.ID, "nfe").send_keys("8")
    _speak(browser)  # every part shown: the result's player, format and download too
    browser.execute_script("document.getElementById('key-box').open = true")
    fields = browser.execute_script(
        "return [...document.querySelectorAll('#options input, #options select')].map((e) => e.id)"
    )
    assert fields == ["voice", "speed", "seed", "nfe"]
    for name, (width, height, mobile) in (("desktop", DESKTOP), ("phone", PHONE)):
        _viewport(browser, width, height, mobile)
        _assert_fits(browser, f"{name} ({width} px)")
        for field in fields + ["format", "download", "text"]:
            assert browser.find_element(By.ID, field).is_displayed(), f"{field} is hidden at {width} px"
        _shot(browser, screenshots, f"playground-{name}")
        browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        _shot(browser, screenshots, f"playground-{name}-end")
        browser.execute_script("window.scrollTo(0, 0)")
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_playground_warns_when_the_server_runs_the_demo_model(
    browser, start_server, tmp_path, screenshots, request
):
    """A `--demo-tiny` export, served by a tritonserver and gateway of this test (no API key: the page asks
    for none and lists the voices at once)."""
    from selenium.webdriver.common.by import By

    repo = export_model(request_from_argv(["--demo-tiny", "--output", str(tmp_path / "demo")])).repository
    assert json.loads((repo / "manifest.json").read_text())["models"]["f5_tts"]["demo_model"] is True
    srv = start_server(repo, host="127.0.0.1")
    gw = Gateway([srv.grpc_url], tmp_path / "voices", tmp_path / "gateway.log", api_key=None)
    try:
        gw.wait_live()
        _say(request, f"demo gateway pid {gw.proc.pid} on {gw.url} in front of tritonserver pid {srv.pid}")
        _open(browser, gw, key=None)
        assert not browser.find_element(By.ID, "key-prompt").is_displayed()
        assert browser.find_element(By.ID, "voice-status").text == "No voices yet: upload one below."
        notice = browser.find_element(By.ID, "demo-notice")
        _wait(browser, "!document.getElementById('demo-notice').hidden")
        assert notice.is_displayed() and notice.text.startswith("DEMO MODEL: this server runs the demo model")
        assert "noise, not speech" in notice.text
        # one model: no model picker
        assert browser.execute_script("return window.playground.models") == ["f5-tts"]
        assert not browser.find_element(By.ID, "model-field").is_displayed()
        assert not browser.find_element(By.ID, "new-model-field").is_displayed()
        for name, (width, height, mobile) in (("desktop", DESKTOP), ("phone", PHONE)):
            _viewport(browser, width, height, mobile)
            _assert_fits(browser, f"demo, {name}")
            _shot(browser, screenshots, f"demo-{name}")
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    finally:
        gw.stop()


def test_the_playground_picks_a_model_and_offers_its_voices(browser, gateway, screenshots):
    """The session's server has two models: the picker lists their ids (not tts-1 and the other aliases), the
    default selected; the voices are the picked model's own and the shared ones; Speak sends the model picked;
    the upload form offers a voice for one model or for every one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    fr_id, name = f"f5-tts-{FR_MODEL}", "fr-in-browser"
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    uploaded = httpx.post(
        f"{gateway.url}/v1/audio/voices",
        headers=headers,
        data={"name": name, "transcript": REFERENCE_TEXT, "model": FR_MODEL},
        files={"audio_sample": ("ref.wav", REFERENCE_WAV.read_bytes(), "audio/wav")},
    )
    assert uploaded.status_code == 201, uploaded.text

    def voices() -> list[str]:
        return [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "voice")).options]

    try:
        _open(browser, gateway)
        assert browser.find_element(By.ID, "model-field").is_displayed()
        picker = Select(browser.find_element(By.ID, "model"))
        assert [(o.get_attribute("value"), o.text) for o in picker.options] == [
            ("f5-tts", "f5-tts (F5TTS_v1_Base_tiny)"),
            (fr_id, f"{fr_id} (F5TTS_Base_tiny)"),
        ]
        assert picker.first_selected_option.get_attribute("value") == "f5-tts"
        assert VOICE in voices() and name not in voices()
        new_model = Select(browser.find_element(By.ID, "new-model"))
        assert [o.get_attribute("value") for o in new_model.options] == ["", "f5-tts", fr_id]
        assert new_model.first_selected_option.text == "every model (a shared voice)"

        picker.select_by_value(fr_id)
        _wait(browser, f"[...document.querySelectorAll('#voice option')].some((o) => o.value === '{name}')")
        assert VOICE not in voices()  # the default model's registered voice
        Select(browser.find_element(By.ID, "voice")).select_by_value(name)
        text = browser.find_element(By.ID, "text")
        text.clear()
        text.send_keys(FRENCH_TEXT)
        browser.find_element(By.ID, "nfe").send_keys("8")
        state, _ = _speak(browser)
        assert state["done"] and state["playedSeconds"] > 0
        _shot(browser, screenshots, "model-picked-desktop")
        # the gateway's line for the answer: the voice, and the model it was sent to
        assert f"voice {name}, pcm (sse)" in gateway.log_text() and "(f5_tts_fr)" in gateway.log_text()

        picker.select_by_value("f5-tts")
        _wait(browser, f"[...document.querySelectorAll('#voice option')].some((o) => o.value === '{VOICE}')")
        assert name not in voices()
    finally:
        assert httpx.delete(f"{gateway.url}/v1/audio/voices/{name}", headers=headers).status_code == 200
