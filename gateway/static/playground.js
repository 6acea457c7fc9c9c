"use strict";
// The playground: asks for OpenAI's `pcm` format (24 kHz, 16-bit little-endian, mono) because raw
// samples can be played the moment they arrive: each network chunk becomes a Web Audio buffer
// scheduled right after the previous one. No build step, no dependencies.

const RATE = 24000;
const MODEL = "f5-tts";
const $ = (id) => document.getElementById(id);

// What happened during the last Speak, for people (the numbers on the page) and for the browser test.
const state = { running: false, done: false, error: null, firstAudioMs: null, receivedSeconds: 0, playedSeconds: 0 };
window.playground = state;
let current = null; // {controller, ctx} of the Speak in progress

function authHeaders(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function errorMessage(response) {
  try {
    return (await response.json()).error.message;
  } catch {
    return `HTTP ${response.status} ${response.statusText}`;
  }
}

function say(id, text, isError = false) {
  $(id).textContent = text;
  $(id).classList.toggle("error", isError);
}

function showMetrics() {
  $("first-audio").textContent = state.firstAudioMs === null ? "–" : `${Math.round(state.firstAudioMs)} ms`;
  $("received").textContent = `${state.receivedSeconds.toFixed(2)} s`;
  $("played").textContent = `${state.playedSeconds.toFixed(2)} s`;
}

async function loadVoices(select) {
  const response = await fetch("/v1/audio/voices", { headers: authHeaders() });
  if (!response.ok) {
    say("voice-status", `Cannot list voices: ${await errorMessage(response)}`, true);
    return;
  }
  const voices = (await response.json()).data;
  say("voice-status", voices.length ? "" : "No voices yet: upload one below.");
  const picker = $("voice");
  picker.replaceChildren(...voices.map((v) => {
    const option = new Option(`${v.name} (${v.source === "library" ? "library" : "registered"})`, v.id);
    option.dataset.source = v.source;
    return option;
  }));
  if (select) picker.value = select;
}

function wavBlob(pieces, samples) {
  // 16-bit PCM WAV of everything received, for replay and download.
  const view = new DataView(new ArrayBuffer(44 + samples * 2));
  const text = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + samples * 2, true); text(8, "WAVEfmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, RATE, true); view.setUint32(28, RATE * 2, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, samples * 2, true);
  let offset = 44;
  for (const piece of pieces) {
    new Uint8Array(view.buffer, offset, piece.byteLength).set(piece);
    offset += piece.byteLength;
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}

function stop() {
  if (!current) return;
  current.controller.abort(); // closes the connection: the gateway cancels the rest on Triton
  current.ctx.close();
  current = null;
}

async function speak() {
  stop();
  Object.assign(state, { running: true, done: false, error: null, firstAudioMs: null, receivedSeconds: 0,
                         playedSeconds: 0 });
  showMetrics();
  $("result").hidden = true;
  $("speak").disabled = true;
  $("stop").disabled = false;
  say("speak-status", "Synthesizing…");
  const ctx = new AudioContext({ sampleRate: RATE });
  const controller = new AbortController();
  current = { controller, ctx };
  const body = { model: MODEL, input: $("text").value, voice: $("voice").value, response_format: "pcm",
                 speed: Number($("speed").value || 1) };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  if ($("nfe").value !== "") body.nfe_step = Number($("nfe").value); // fewer steps: faster, rougher
  const started = performance.now();
  try {
    await ctx.resume();
    const response = await fetch("/v1/audio/speech", {
      method: "POST", headers: authHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    const reader = response.body.getReader();
    const pieces = [];
    let samples = 0;
    let carry = new Uint8Array(0); // an odd byte left over from a network chunk
    let next = ctx.currentTime + 0.05;
    let scheduled = 0;
    let ended = 0;
    let finishPlaying;
    const allPlayed = new Promise((resolve) => { finishPlaying = resolve; });
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const bytes = new Uint8Array(carry.length + value.length);
      bytes.set(carry);
      bytes.set(value, carry.length);
      const even = bytes.length & ~1;
      carry = bytes.slice(even);
      if (!even) continue;
      const piece = bytes.slice(0, even);
      pieces.push(piece);
      const view = new DataView(piece.buffer);
      const n = even / 2;
      const floats = new Float32Array(n);
      for (let i = 0; i < n; i++) floats[i] = view.getInt16(i * 2, true) / 32768;
      const buffer = ctx.createBuffer(1, n, RATE);
      buffer.copyToChannel(floats, 0);
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(ctx.destination);
      next = Math.max(next, ctx.currentTime);
      source.start(next);
      next += buffer.duration;
      scheduled += 1;
      source.onended = () => {
        if (current?.ctx !== ctx) return;
        state.playedSeconds += buffer.duration;
        ended += 1;
        showMetrics();
        if (state.done && ended === scheduled) finishPlaying();
      };
      if (state.firstAudioMs === null) {
        state.firstAudioMs = performance.now() - started;
        say("speak-status", "Playing while the rest streams in…");
      }
      samples += n;
      state.receivedSeconds = samples / RATE;
      showMetrics();
    }
    state.done = true;
    $("result").src = URL.createObjectURL(wavBlob(pieces, samples));
    $("result").hidden = false;
    say("speak-status", `Received ${state.receivedSeconds.toFixed(2)} s of audio in ` +
                        `${((performance.now() - started) / 1000).toFixed(2)} s.`);
    if (ended === scheduled) finishPlaying();
    await allPlayed;
    say("speak-status", `Played ${state.playedSeconds.toFixed(2)} s of audio; first audio after ` +
                        `${Math.round(state.firstAudioMs)} ms.`);
  } catch (e) {
    if (e.name !== "AbortError") {
      state.error = e.message;
      say("speak-status", e.message, true);
    } else {
      say("speak-status", "Stopped.");
    }
  } finally {
    state.running = false;
    $("speak").disabled = false;
    $("stop").disabled = true;
  }
}

async function upload() {
  const file = $("new-audio").files[0];
  const name = $("new-name").value.trim();
  if (!name || !file || !$("new-transcript").value.trim()) {
    say("voice-status", "Give a name, an audio sample and its transcript.", true);
    return;
  }
  const form = new FormData();
  form.append("name", name);
  form.append("audio_sample", file);
  form.append("transcript", $("new-transcript").value);
  say("voice-status", "Uploading…");
  const response = await fetch("/v1/audio/voices", { method: "POST", headers: authHeaders(), body: form });
  if (!response.ok) {
    say("voice-status", await errorMessage(response), true);
    return;
  }
  const voice = await response.json();
  await loadVoices(voice.id);
  say("voice-status", `Voice '${voice.name}' added (${voice.seconds.toFixed(1)} s).`);
}

async function deleteVoice() {
  const option = $("voice").selectedOptions[0];
  if (!option) return;
  if (option.dataset.source !== "library") {
    say("voice-status", `'${option.value}' is registered on the server and cannot be deleted here.`, true);
    return;
  }
  const response = await fetch(`/v1/audio/voices/${encodeURIComponent(option.value)}`,
                               { method: "DELETE", headers: authHeaders() });
  const message = response.ok ? `Voice '${option.value}' deleted.` : await errorMessage(response);
  await loadVoices();
  say("voice-status", message, !response.ok);
}

$("api-key").value = localStorage.getItem("f5-gateway-key") || "";
$("api-key").addEventListener("change", () => {
  localStorage.setItem("f5-gateway-key", $("api-key").value.trim());
  loadVoices();
});
$("speak").addEventListener("click", speak);
$("stop").addEventListener("click", () => { stop(); });
$("upload").addEventListener("click", upload);
$("delete").addEventListener("click", deleteVoice);
loadVoices().then(() => { window.playgroundReady = true; });
