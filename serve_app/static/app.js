// The page: wires the form, the player, the voice picker, your own voices and the GPU panel together.

import { ApiError, getJSON, onKeyNeeded, postJSON, sharedFailure, withKey } from "./api.js";
import { showError } from "./dom.js";
import { GpuPanel } from "./gpu.js";
import { LANGUAGES, initialLanguage, language, onLanguageChange, setLanguage, t } from "./i18n.js";
import { KeyPrompt } from "./key.js";
import { ListenPanel, STT_KIND } from "./listen.js";
import { OwnVoices } from "./own-voices.js";
import { Player } from "./player.js";
import { canStream, streamSpeech } from "./stream.js";
import { VoicePicker } from "./voices.js";

const CFG_VALUES = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]; // Kyutai's 1.6B is CFG-distilled on these
const CLONING_KIND = "tts-audio-prompt"; // a model whose voices are clips (GET /api/info, `kind`)
// Raw PCM is left out: browsers cannot play it.
const FORMATS = { wav: "audio/wav", mp3: "audio/mpeg", opus: 'audio/ogg; codecs="opus"', flac: "audio/flac", aac: "audio/aac" };

const $ = (id) => document.getElementById(id);
const ui = {
  text: $("text"), chars: $("char-count"), generate: $("generate"), progress: $("progress"),
  cfg: $("cfg"), format: $("format"), formatHint: $("format-hint"), lang: $("lang"), note: $("test-model-note"),
  model: $("model-name"), version: $("version"), modelField: $("model-field"), modelPick: $("model"),
};
// Error boxes, each next to its control; a shown error is redrawn when the language changes.
const errorBoxes = { text: $("text-error"), voice: $("voice-error"), cfg_coef: $("cfg-error"),
  format: $("format-error"), generate: $("generate-error") };
const errors = {};

const info = { max_text_chars: null, default_cfg_coef: 2.0 };
const picker = new VoicePicker({ search: $("voice-search"), select: $("voice"), count: $("voice-count") });
const player = new Player({ container: $("result"), audio: $("audio"), download: $("download"), info: $("result-info"), words: $("words") });
const gpus = new GpuPanel({ list: $("gpu-list"), summary: $("gpu-summary"), updated: $("gpu-updated"),
  error: $("gpu-error"), offloadAll: $("offload-all"), message: $("gpu-message") });
const ownVoices = new OwnVoices({
  panel: $("my-voices"), record: $("record"), recordLabel: $("record-label"), recordTime: $("record-time"),
  file: $("clip-file"), preview: $("clip-preview"), clipName: $("clip-name"), name: $("clip-voice-name"),
  consent: $("consent"), upload: $("upload"), status: $("upload-status"), error: $("upload-error"),
  list: $("my-voice-list"), empty: $("my-voice-empty"), attribution: $("attribution"), uploadsOff: $("uploads-off"),
}, { onChange: (voice) => voiceChanged(voice) });
const listen = new ListenPanel({
  panel: $("listen"), model: $("listen-model"), mic: $("listen-mic"), micLabel: $("listen-mic-label"),
  file: $("listen-file"), fileButton: $("listen-file-button"), status: $("listen-status"), pause: $("listen-pause"),
  error: $("listen-error"), words: $("listen-words"), empty: $("listen-empty"),
});
const keyPrompt = new KeyPrompt({ form: $("key-form"), input: $("key-input"), error: $("key-error") });
let lastResult = null;
let lastTiming = null;

function setError(place, key, vars = {}) {
  errors[place] = key ? { key, vars } : null;
  showError(errorBoxes[place], key ? t(key, vars) : null);
}

function clearErrors() {
  Object.keys(errorBoxes).forEach((place) => setError(place, null));
}

/** Puts a failed request's message next to the control it concerns, in plain words. */
function reportFailure(exc) {
  if (!(exc instanceof ApiError)) return setError("generate", "err_server", { detail: String(exc) });
  const shared = sharedFailure(exc);
  if (shared) return setError("generate", shared.key, shared.vars);
  if (exc.code === "empty_text") return setError("text", "err_empty_text");
  if (exc.status === 503) return setError("generate", "err_unavailable", { detail: exc.message });
  if (exc.status === 408 || exc.status === 504) return setError("generate", "err_timeout");
  const place = exc.param in errorBoxes ? exc.param : "generate";
  setError(place, "err_server", { detail: exc.message });
}

function validate(text) {
  if (!text.trim()) {
    setError("text", "err_empty_text");
    ui.text.focus();
    return false;
  }
  if (info.max_text_chars && text.length > info.max_text_chars) {
    setError("text", "err_text_too_long", { n: text.length, max: info.max_text_chars });
    ui.text.focus();
    return false;
  }
  return true;
}

/** Speaks `request` into the player: streamed where the browser can play the format while it
 * arrives, else saved by the service and played from its URL. Returns the answer's description
 * (duration_s, voice, gpu, replica, words). */
async function synthesize(request) {
  if (canStream(request.format)) {
    const { blob, done } = await streamSpeech(request, { onStart: (src) => player.start(src), onWord: (w) => player.addWord(w) });
    player.setWords(done.words);
    player.setDownload(URL.createObjectURL(blob), `kyutai-tts-${stamp()}.${request.format}`);
    return done;
  }
  const saved = await postJSON("api/tts", { ...request, save: true });
  player.start(withKey(saved.url)); // the browser loads it by itself: the key goes in the URL
  player.setWords(saved.words);
  player.setDownload(withKey(saved.url), saved.url.split("/").pop());
  return saved;
}

function stamp() {
  const d = new Date();
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${two(d.getMonth() + 1)}${two(d.getDate())}-${two(d.getHours())}${two(d.getMinutes())}${two(d.getSeconds())}`;
}

async function generate() {
  if (ui.generate.disabled) return; // one request at a time from this page
  clearErrors();
  const text = ui.text.value;
  if (!validate(text)) return;
  const request = { text, cfg_coef: Number(ui.cfg.value), format: ui.format.value };
  if (picker.value) request.voice = picker.value;
  if (!ui.modelField.hidden) request.model = ui.modelPick.value;

  const started = performance.now();
  const seconds = () => ((performance.now() - started) / 1000).toFixed(1);
  setBusy(true);
  const ticker = setInterval(() => (ui.progress.textContent = t("generating", { s: seconds() })), 100);
  ui.progress.textContent = t("generating", { s: seconds() });
  try {
    lastResult = null; // a failure leaves no stale description behind
    lastResult = await synthesize(request);
    lastTiming = seconds();
    describeResult();
    setTimeout(() => gpus.refresh(), 1500); // once the replicas reported their new state (every 1 s)
  } catch (exc) {
    lastTiming = null;
    ui.progress.textContent = "";
    reportFailure(exc);
  } finally {
    clearInterval(ticker);
    setBusy(false);
  }
}

function describeResult() {
  if (lastTiming) ui.progress.textContent = t("done", { s: lastTiming });
  if (!lastResult) return;
  const r = lastResult;
  const key = r.gpu === null || r.gpu === undefined ? "resultInfoCpu" : "resultInfo";
  player.describe(t(key, { duration: r.duration_s.toFixed(2), voice: r.voice, gpu: r.gpu, replica: r.replica }));
  player.showEmpty(); // redraws "no words" in the new language
}

function setBusy(busy) {
  ui.generate.disabled = busy;
  ui.generate.classList.toggle("busy", busy);
  ui.generate.setAttribute("aria-busy", String(busy));
}

function updateFormatHint() {
  ui.formatHint.textContent = t(canStream(ui.format.value) ? "formatStreams" : "formatWhole");
}

function updateCharCount() {
  ui.chars.textContent = info.max_text_chars ? t("chars", { n: ui.text.value.length, max: info.max_text_chars }) : "";
}

/** The cfg values a model takes (GET /api/info: JSON Schema keywords), as choices in steps of 0.5 at most. */
function cfgValues(model) {
  const rule = model?.cfg_coef;
  if (!rule) return CFG_VALUES;
  if (rule.enum) return rule.enum;
  const step = rule.multipleOf ?? 0.5;
  const values = [];
  for (let v = rule.minimum; v <= rule.maximum + 1e-9 && values.length < 50; v += step) values.push(Number(v.toFixed(3)));
  return values;
}

function currentModel() {
  return (info.models ?? []).find((m) => (ui.modelField.hidden ? m.default : m.name === ui.modelPick.value));
}

function fillCfg() {
  const model = currentModel();
  const values = cfgValues(model);
  const wanted = model?.default_cfg_coef ?? info.default_cfg_coef;
  ui.cfg.replaceChildren(...values.map((v) => new Option(v.toFixed(1), String(v))));
  ui.cfg.value = String(values.includes(wanted) ? wanted : values.includes(2.0) ? 2.0 : values[0]);
}

function fillOptions() {
  fillCfg();
  const probe = document.createElement("audio");
  const playable = Object.entries(FORMATS).filter(([name, type]) => name === "wav" || probe.canPlayType(type));
  ui.format.replaceChildren(...playable.map(([name]) => new Option(name.toUpperCase(), name)));
  ui.format.value = canStream("mp3") ? "mp3" : "wav"; // a streamed format starts playing sooner
  updateFormatHint();
  ui.lang.replaceChildren(...Object.entries(LANGUAGES).map(([code, name]) => new Option(name, code)));
}

async function loadInfo() {
  try {
    Object.assign(info, await getJSON("api/info"));
  } catch {
    return; // the page works without it
  }
  if (info.engine) ui.note.dataset.i18n = "fakeEngineNote"; // a scripted fake, not even a random model
  ui.note.textContent = t(ui.note.dataset.i18n);
  ui.note.hidden = !info.test_model;
  ui.model.textContent = info.model;
  ui.version.textContent = info.version;
  const speaking = (info.models ?? []).filter((m) => m.kind !== STT_KIND);
  ui.modelPick.replaceChildren(...speaking.map((m) => new Option(m.name === m.id ? m.name : `${m.name} · ${m.id}`, m.name)));
  ui.modelPick.value = speaking.find((m) => m.default)?.name ?? "";
  ui.modelField.hidden = speaking.length < 2;
  fillCfg();
  updateCharCount();
  ownVoices.setModel(speaking.find((m) => m.kind === CLONING_KIND)?.name ?? null);
  listen.setModels(info.models ?? []);
}

/** Loads the chosen model's voices into the picker, selecting `wanted` if it is among them. */
async function loadVoices(wanted = null) {
  const model = ui.modelField.hidden ? "" : `?model=${encodeURIComponent(ui.modelPick.value)}`;
  try {
    picker.load(await getJSON(`api/voices${model}`), wanted);
    if (errors.voice) setError("voice", null);
  } catch (exc) {
    picker.failed();
    setError("voice", "err_voices", { detail: exc.message });
  }
}

/** A voice of your own was made (speak with it: its model and it are selected) or deleted. */
function voiceChanged(voice) {
  if (voice && !ui.modelField.hidden && ui.modelPick.value !== voice.model) {
    ui.modelPick.value = voice.model;
    fillCfg();
  }
  loadVoices(voice?.id ?? picker.value);
}

function start() {
  onKeyNeeded((refused) => keyPrompt.ask(refused));
  fillOptions();
  onLanguageChange(() => {
    ui.lang.value = language();
    Object.entries(errors).forEach(([place, e]) => e && showError(errorBoxes[place], t(e.key, e.vars)));
    picker.render();
    gpus.render();
    keyPrompt.render();
    ownVoices.render();
    listen.render();
    updateCharCount();
    updateFormatHint();
    describeResult();
  });
  ui.format.addEventListener("change", updateFormatHint);
  ui.modelPick.addEventListener("change", () => {
    fillCfg();
    loadVoices();
  });
  setLanguage(initialLanguage());
  ui.lang.addEventListener("change", () => setLanguage(ui.lang.value));
  ui.generate.addEventListener("click", generate);
  ui.text.addEventListener("input", () => {
    updateCharCount();
    if (errors.text) setError("text", null);
  });
  ui.text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) generate();
  });
  $("audio").addEventListener("error", () => {
    if ($("audio").getAttribute("src")) setError("format", "err_playback", { format: ui.format.value });
  });
  loadInfo();
  loadVoices();
  gpus.start();
}

start();
