"use strict";
// The playground: asks for OpenAI's `pcm` format (24 kHz, 16-bit little-endian, mono) because raw
// samples can be played the moment they arrive: each piece becomes a Web Audio buffer scheduled right
// after the previous one. The pieces come as server-sent events, each after the captions of the text
// it begins to speak, so that the page shows the words and marks the one being heard.
// No build step, no dependencies.

const RATE = 24000;
const MODEL = "f5-tts"; // the default model's id, until GET /v1/models says which models there are
const KEY_STORAGE = "f5-gateway-key";
const EXTENSIONS = { wav: "wav", mp3: "mp3", flac: "flac", opus: "opus", aac: "aac", pcm: "pcm" };
const $ = (id) => document.getElementById(id);
const utf8 = new TextEncoder();

// What happened during the last Speak and Download, and what the gateway said about its model: for
// people (on the page) and for the browser test.
const state = { running: false, done: false, error: null, firstAudioMs: null, receivedSeconds: 0, playedSeconds: 0,
                seed: null, download: null, limits: null, demoModel: null, models: [] };
window.playground = state;
let current = null; // {controller, ctx} of the Speak in progress
let last = null; // {body, pieces, samples} of the last finished Speak: what Download saves
let downloadUrl = null; // revoked when the next download replaces it (at once could cancel the save)
let voices = new Map(); // id -> the voice as GET /v1/audio/voices lists it (a library voice's transcript)
let models = new Map(); // id -> the model as GET /v1/models lists it (its own id, not its aliases)

function authHeaders(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// Every call to the API: a 401 opens the key box and says what to do there.
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
  if (response.status === 401) askForKey();
  return response;
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

function askForKey() {
  const given = $("api-key").value.trim() !== "";
  $("key-prompt").textContent = given
    ? "The gateway did not accept this API key: correct it in the box below, then press Enter."
    : "This gateway needs an API key: type it in the box below and press Enter. The voices appear once it is accepted.";
  $("key-prompt").hidden = false;
  $("key-box").open = true;
  $("api-key").classList.add("attention");
  $("api-key").focus();
}

function keyAccepted() {
  $("key-prompt").hidden = true;
  $("api-key").classList.remove("attention");
}

function showMetrics() {
  $("first-audio").textContent = state.firstAudioMs === null ? "–" : `${Math.round(state.firstAudioMs)} ms`;
  $("received").textContent = `${state.receivedSeconds.toFixed(2)} s`;
  $("played").textContent = `${state.playedSeconds.toFixed(2)} s`;
}

// The model picked: its id, as a request's `model`.
function modelId() {
  return $("model").value || MODEL;
}

// The voices usable with the model picked: its own and the shared ones.
async function loadVoices(select) {
  const response = await api(`/v1/audio/voices?model=${encodeURIComponent(modelId())}`);
  if (response.status === 401) {
    $("voice").replaceChildren();
    showVoiceDetail();
    say("voice-status", "The voices are listed once the API key is accepted.");
    return;
  }
  if (!response.ok) {
    say("voice-status", `Cannot list voices: ${await errorMessage(response)}`, true);
    return;
  }
  keyAccepted();
  const listing = await response.json();
  voices = new Map(listing.data.map((v) => [v.id, v]));
  const picker = $("voice");
  picker.replaceChildren(...listing.data.map((v) => {
    const kind = v.source === "alias" ? `alias of ${v.alias_of}` : v.source === "library" ? "library" : "registered";
    const option = new Option(`${v.name} (${kind})`, v.id);
    option.dataset.source = v.source;
    return option;
  }));
  if (select && voices.has(select)) picker.value = select;
  showVoiceDetail();
  if (listing.registered && listing.registered !== "available") {
    say("voice-status", `The server's registered voices are missing: ${listing.registered}`, true);
  } else {
    say("voice-status", voices.size ? "" : "No voices yet: upload one below.");
  }
}

// A library voice's transcript, editable; registered voices and aliases keep theirs on the server.
function showVoiceDetail() {
  const voice = voices.get($("voice").value);
  const library = voice?.source === "library";
  $("voice-detail").hidden = !library;
  if (!library) return;
  $("voice-transcript").value = voice.transcript;
  $("transcript-source").textContent = voice.transcript_source === "transcribed"
    ? "Transcribed by the server: correct it here if it misheard the sample, then Save."
    : "As given; Save a correction if it does not match the sample.";
}

async function saveTranscript() {
  const name = $("voice").value;
  const transcript = $("voice-transcript").value.trim();
  if (!transcript) {
    say("voice-status", "Give the transcript: the words spoken in the voice's sample.", true);
    return;
  }
  const response = await api(`/v1/audio/voices/${encodeURIComponent(name)}`, {
    method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ transcript }),
  });
  if (!response.ok) {
    say("voice-status", await errorMessage(response), true); // the field keeps the text, to be corrected
    return;
  }
  await loadVoices(name);
  say("voice-status", `Transcript of '${name}' saved.`);
}

// The models, their limits and demo flags come from the gateway (GET /v1/models), never from this page: a
// picker of the models' own ids (not their aliases, such as tts-1), the default one first and selected, shown
// only when there are several.
async function loadModels() {
  const response = await api("/v1/models");
  if (!response.ok) return; // a 401 asks for the key; the voice list says why otherwise
  const listing = await response.json();
  const own = listing.data.filter((m) => m.alias_of === null);
  models = new Map(own.map((m) => [m.id, m]));
  state.models = own.map((m) => m.id);
  const picked = $("model").value;
  const label = (m) => (m.architecture ? `${m.id} (${m.architecture})` : m.id);
  $("model").replaceChildren(...own.map((m) => new Option(label(m), m.id)));
  $("model").value = models.has(picked) ? picked : (own.find((m) => m.default) ?? own[0])?.id ?? "";
  $("new-model").replaceChildren(new Option("every model (a shared voice)", ""),
                                 ...own.map((m) => new Option(`${m.id} only`, m.id)));
  $("model-field").hidden = $("new-model-field").hidden = own.length < 2;
  showModel();
}

// The picked model's limits and demo flag.
function showModel() {
  const model = models.get(modelId());
  if (!model) return;
  if (Number.isInteger(model.max_input_chars) && Number.isInteger(model.max_input_bytes)) {
    state.limits = { chars: model.max_input_chars, bytes: model.max_input_bytes };
  }
  state.demoModel = model.demo_model === true;
  $("demo-notice").hidden = !state.demoModel;
  countText();
}

async function pickModel() {
  showModel();
  await loadVoices($("voice").value); // the voice kept when the new model has it too
}

function tooLong() {
  const text = $("text").value;
  const limits = state.limits;
  return limits !== null && ([...text].length > limits.chars || utf8.encode(text).length > limits.bytes);
}

function countText() {
  const text = $("text").value;
  // Code points, as the gateway counts characters (an emoji is one, not JavaScript's two), and UTF-8
  // bytes, as the server counts its limit.
  const chars = [...text].length;
  const bytes = utf8.encode(text).length;
  const limits = state.limits;
  let line = limits ? `${chars} / ${limits.chars} characters · ${bytes} / ${limits.bytes} bytes (UTF-8)`
                    : `${chars} characters · ${bytes} bytes (UTF-8)`;
  if (tooLong()) line += ": too long for this server; shorten the text to speak it";
  say("counter", line, tooLong());
  $("speak").disabled = state.running || tooLong();
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

// Whole events out of a server-sent event stream, whose network chunks may end anywhere: inside an event,
// a line or a UTF-8 character. A line is joined only once its end has come, since one line holds a whole
// piece of audio that may arrive in many reads. Only `data:` lines matter here; an event left unfinished
// at the end of the stream is dropped.
async function* sseEvents(reader) {
  const decoder = new TextDecoder();
  let partial = []; // the text of a line not yet ended
  let data = []; // the data lines of the event being read
  for (;;) {
    const { value, done } = await reader.read();
    const text = decoder.decode(value, { stream: !done });
    if (!done && !text.includes("\n")) {
      partial.push(text);
      continue;
    }
    const lines = (partial.join("") + text).split("\n");
    partial = [lines.pop()];
    for (const line of lines.map((l) => l.replace(/\r$/, ""))) {
      if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      if (line === "" && data.length) {
        yield JSON.parse(data.join("\n"));
        data = [];
      }
    }
    if (done) return;
  }
}

// The words of each cue, one span each with its times (seconds from the start of the audio); a script's
// speaker before the text, whenever the speaker changes.
function showCues(cues, playback) {
  const captions = $("captions");
  for (const cue of cues) {
    if (cue.speaker !== null && cue.speaker !== playback.speaker) {
      const label = document.createElement("span");
      label.className = "speaker";
      label.textContent = `${cue.speaker}:`;
      if (playback.speaker !== null) captions.append(document.createElement("br"));
      captions.append(label, " ");
      playback.speaker = cue.speaker;
    }
    for (const w of cue.words) {
      const span = document.createElement("span");
      span.className = "word";
      span.textContent = w.word;
      Object.assign(span.dataset, { start: w.start, end: w.end, estimated: w.estimated });
      captions.append(span, " ");
      playback.words.push({ span, start: w.start, end: w.end });
    }
  }
  captions.hidden = playback.words.length === 0;
}

// Marks the word being heard, frame by frame, until the audio has played or is stopped. The position in
// the audio is the context's time since the piece now playing started, plus where that piece starts in the
// audio: a piece that came late was scheduled after a gap of silence, in which no word is heard.
function follow(ctx, playback) {
  let lit = null;
  const frame = () => {
    const now = ctx.currentTime;
    const piece = playback.timeline.find(({ at, seconds }) => at <= now && now < at + seconds);
    const position = piece && piece.offset + (now - piece.at);
    const last = playback.timeline.at(-1);
    const playing = current?.ctx === ctx && !(playback.over && now >= last.at + last.seconds);
    const word = playing && piece ? playback.words.find((w) => w.start <= position && position < w.end) : undefined;
    const span = word?.span ?? null;
    if (span !== lit) {
      lit?.classList.remove("speaking");
      span?.classList.add("speaking");
      lit = span;
    }
    if (playing) requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

function stop() {
  if (!current) return;
  current.controller.abort(); // closes the connection: the gateway cancels the rest on Triton
  current.ctx.close();
  current = null;
}

function speechBody() {
  const body = { model: modelId(), input: $("text").value, voice: $("voice").value, response_format: "pcm",
                 speed: Number($("speed").value || 1) };
  // A seed always: drawn here when none is given (or -1, "random"), so that Download can ask for the
  // same speech again in another format.
  const seed = $("seed").value === "" ? -1 : Number($("seed").value);
  body.seed = seed >= 0 ? seed : crypto.getRandomValues(new Uint32Array(1))[0];
  if ($("nfe").value !== "") body.nfe_step = Number($("nfe").value); // fewer steps: faster, rougher
  return body;
}

async function speak() {
  stop();
  Object.assign(state, { running: true, done: false, error: null, firstAudioMs: null, receivedSeconds: 0,
                         playedSeconds: 0, seed: null, download: null });
  last = null;
  showMetrics();
  $("captions").replaceChildren();
  $("captions").hidden = true;
  $("result").hidden = true;
  say("download-status", "");
  $("speak").disabled = true;
  $("stop").disabled = false;
  say("speak-status", "Synthesizing…");
  const ctx = new AudioContext({ sampleRate: RATE });
  const controller = new AbortController();
  current = { controller, ctx };
  const body = speechBody();
  state.seed = body.seed;
  const started = performance.now();
  // Each scheduled piece ({at: context time, offset: its start in the audio, seconds}) and the words shown:
  // what follow() needs to mark the word being heard.
  const playback = { timeline: [], words: [], speaker: null, over: false };
  try {
    await ctx.resume();
    const response = await api("/v1/audio/speech", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, stream_format: "sse", captions: "json" }), signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    const pieces = [];
    let samples = 0;
    let next = ctx.currentTime + 0.05;
    let scheduled = 0;
    let ended = 0;
    let finishPlaying;
    const allPlayed = new Promise((resolve) => { finishPlaying = resolve; });
    controller.signal.addEventListener("abort", finishPlaying); // Stop while the last pieces play
    let complete = false;
    for await (const event of sseEvents(response.body.getReader())) {
      if (event.type === "error") throw new Error(event.error.message);
      if (event.type === "speech.captions") showCues(event.chunks, playback);
      if (event.type === "speech.audio.done") complete = true;
      if (event.type !== "speech.audio.delta") continue;
      // Whole 16-bit samples: the gateway encodes each piece whole.
      const piece = Uint8Array.from(atob(event.audio), (c) => c.charCodeAt(0));
      pieces.push(piece);
      const view = new DataView(piece.buffer);
      const n = piece.length / 2;
      const floats = new Float32Array(n);
      for (let i = 0; i < n; i++) floats[i] = view.getInt16(i * 2, true) / 32768;
      const buffer = ctx.createBuffer(1, n, RATE);
      buffer.copyToChannel(floats, 0);
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(ctx.destination);
      next = Math.max(next, ctx.currentTime);
      source.start(next);
      playback.timeline.push({ at: next, offset: samples / RATE, seconds: buffer.duration });
      if (scheduled === 0) follow(ctx, playback);
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
    if (!complete) throw new Error("The speech broke off: the gateway ended the stream before its end.");
    state.done = true;
    last = { body, pieces, samples };
    if ($("player").src) URL.revokeObjectURL($("player").src);
    $("player").src = URL.createObjectURL(wavBlob(pieces, samples));
    $("result").hidden = false;
    say("speak-status", `Received ${state.receivedSeconds.toFixed(2)} s of audio in ` +
                        `${((performance.now() - started) / 1000).toFixed(2)} s.`);
    if (ended === scheduled) finishPlaying();
    await allPlayed;
    if (controller.signal.aborted) throw new DOMException("Stopped", "AbortError");
    say("speak-status", `Played ${state.playedSeconds.toFixed(2)} s of audio; first audio after ` +
                        `${Math.round(state.firstAudioMs)} ms (seed ${body.seed}).`);
  } catch (e) {
    if (e.name !== "AbortError") {
      controller.abort(); // the gateway stops synthesizing; what was scheduled still plays
      state.error = e.message;
      say("speak-status", e.message, true);
    } else {
      say("speak-status", "Stopped.");
    }
  } finally {
    playback.over = true;
    state.running = false;
    countText(); // re-enables Speak unless the text is too long
    $("stop").disabled = true;
  }
}

async function download() {
  if (!last) return;
  const format = $("format").value;
  $("download").disabled = true;
  state.download = null;
  try {
    let blob;
    if (format === "wav") {
      blob = wavBlob(last.pieces, last.samples); // what was played: no second synthesis
    } else {
      // The browser cannot encode these: the gateway does, for the same request with the same seed.
      say("download-status", `Encoding as ${format} (the same request again, seed ${last.body.seed})…`);
      const response = await api("/v1/audio/speech", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...last.body, response_format: format }),
      });
      if (!response.ok) throw new Error(await errorMessage(response));
      blob = await response.blob();
    }
    const name = `speech-seed${last.body.seed}.${EXTENSIONS[format]}`;
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = downloadUrl;
    link.download = name;
    link.click();
    state.download = { format, name, bytes: blob.size, url: downloadUrl };
    say("download-status", `Saved ${name} (${(blob.size / 1024).toFixed(1)} KiB).`);
  } catch (e) {
    state.download = { format, error: e.message };
    say("download-status", `Cannot download ${format}: ${e.message}`, true);
  } finally {
    $("download").disabled = false;
  }
}

async function upload() {
  const file = $("new-audio").files[0];
  const name = $("new-name").value.trim();
  if (!name || !file) {
    say("voice-status", "Give a name and an audio sample (and its transcript, or leave that to the server).", true);
    return;
  }
  // Without a transcript the gateway has the server transcribe the sample.
  const transcript = $("new-transcript").value.trim();
  const form = new FormData();
  form.append("name", name);
  form.append("audio_sample", file);
  if (transcript) form.append("transcript", transcript);
  if ($("new-model").value) form.append("model", $("new-model").value); // else shared by every model
  say("voice-status", transcript ? "Uploading…" : "Uploading and transcribing…");
  const response = await api("/v1/audio/voices", { method: "POST", body: form });
  if (!response.ok) {
    say("voice-status", await errorMessage(response), true); // the form stays, to be corrected
    return;
  }
  const voice = await response.json();
  for (const id of ["new-name", "new-audio", "new-transcript"]) $(id).value = ""; // ready for the next voice
  await loadVoices(voice.id);
  const heard = voice.transcript_source === "transcribed" ? ` Transcribed as "${voice.transcript}": check it above.` : "";
  say("voice-status", `Voice '${voice.name}' added (${voice.seconds.toFixed(1)} s).${heard}`);
}

async function deleteVoice() {
  const option = $("voice").selectedOptions[0];
  if (!option) return;
  if (option.dataset.source !== "library") {
    say("voice-status", `'${option.value}' is not in the library (${option.text}) and cannot be deleted here.`, true);
    return;
  }
  if (!window.confirm(`Delete the voice '${option.value}' from the library? This cannot be undone.`)) {
    say("voice-status", `Voice '${option.value}' kept.`);
    return;
  }
  const response = await api(`/v1/audio/voices/${encodeURIComponent(option.value)}`, { method: "DELETE" });
  const message = response.ok ? `Voice '${option.value}' deleted.` : await errorMessage(response);
  await loadVoices();
  say("voice-status", message, !response.ok);
}

// A failed fetch (the gateway down, the network gone) rejects: said on the page, not only in the console.
function guarded(statusId, action) {
  return () => action().catch((e) => say(statusId, `Cannot reach the gateway: ${e.message}`, true));
}

$("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
$("api-key").addEventListener("change", () => {
  localStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
  guarded("voice-status", () => loadModels().then(() => loadVoices()))();
});
$("text").addEventListener("input", countText);
$("speak").addEventListener("click", speak);
$("stop").addEventListener("click", () => { stop(); });
$("download").addEventListener("click", guarded("download-status", download));
$("upload").addEventListener("click", guarded("voice-status", upload));
$("voice").addEventListener("change", showVoiceDetail);
$("model").addEventListener("change", guarded("voice-status", pickModel));
$("save-transcript").addEventListener("click", guarded("voice-status", saveTranscript));
$("voice-transcript").addEventListener("keydown", (e) => {
  if (e.key !== "Enter") return;
  e.preventDefault(); // a transcript is one line: Enter saves it
  guarded("voice-status", saveTranscript)();
});
$("delete").addEventListener("click", guarded("voice-status", deleteVoice));
countText();
guarded("voice-status", () => loadModels().then(() => loadVoices()))().then(() => {
  window.playgroundReady = true;
});
