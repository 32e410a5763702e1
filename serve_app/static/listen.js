// "Listen": speech to text in the page. The microphone streams over Kyutai's ASR WebSocket
// (asr-socket.js, microphone.js): words appear as the model hears them, and the voice-activity
// heads' pause probability shows where the model has them (its Step messages); Stop ends the audio
// and waits for the last words. A chosen file goes to POST v1/audio/transcriptions with
// `stream: true`, its words appearing as they are heard. Shown only when the service serves a
// speech-to-text model (GET /api/info, kind "stt"); the model chooser lists those only.

import { ApiError, getJSON, postForResponse, sharedFailure } from "./api.js";
import { AsrSocket, FRAME_SAMPLES, SAMPLE_RATE, asrUrl } from "./asr-socket.js";
import { element, showError } from "./dom.js";
import { t } from "./i18n.js";
import { Microphone, canStreamMicrophone } from "./microphone.js";
import { eventError, serverSentEvents } from "./stream.js";

export const STT_KIND = "stt";
const NO_FREE_CHANNELS = "no free channels"; // the service's Error when every row is busy (Kyutai's words)
const PAUSE_HEAD = 2; // of the 4 voice-activity heads (0.5, 1, 2, 3 s ahead): the one Unmute reads
const STEP_S = FRAME_SAMPLES / SAMPLE_RATE;

export class ListenPanel {
  /** `els`: the panel's elements. */
  constructor(els) {
    this.els = els;
    this.models = []; // the speech-to-text models' names
    this.words = [];
    this.status = null; // {key, vars}; like `error`, redrawn on a language change
    this.error = null;
    this.pause = null; // the last Step's pause probability (null: none came)
    this.session = null; // the microphone's stream while it runs
    this.busy = false;
    els.mic.hidden = !canStreamMicrophone();
    els.mic.addEventListener("click", () => (this.session ? this.stopMic() : this.startMic()));
    els.file.addEventListener("change", () => {
      const file = els.file.files[0];
      els.file.value = ""; // the same file chosen again is a new request
      if (file) this.transcribeFile(file);
    });
  }

  /** Shows the panel with the models of /api/info's list that listen (none: hidden). */
  setModels(models) {
    const names = models.filter((m) => m.kind === STT_KIND).map((m) => m.name);
    const chosen = this.els.model.value;
    this.models = names;
    this.els.model.replaceChildren(...names.map((name) => new Option(name, name)));
    if (names.includes(chosen)) this.els.model.value = chosen;
    this.els.panel.hidden = names.length === 0;
  }

  /** Before a stream: the service still serves the chosen model (asking for the API key if it
   * wants one, api.js, so the socket can carry it). */
  async modelStillServed() {
    this.setModels((await getJSON("api/info")).models ?? []);
    return this.models.includes(this.els.model.value);
  }

  begin(statusKey, vars) {
    this.busy = true;
    this.words = [];
    this.pause = null;
    this.els.words.replaceChildren();
    this.setError(null);
    this.setStatus(statusKey, vars);
    this.render();
  }

  finish() {
    this.busy = false;
    this.render();
  }

  // ---- the microphone, over the socket ----------------------------------------------------------
  async startMic() {
    if (this.busy) return;
    this.begin("listenConnecting");
    try {
      if (!(await this.modelStillServed())) return this.fail(null, "err_no_stt");
    } catch (exc) {
      return this.fail(exc);
    }
    const session = { ready: false, stopping: false, samples: 0, errorMessage: null };
    session.microphone = new Microphone({
      sampleRate: SAMPLE_RATE, frameSamples: FRAME_SAMPLES, onFrame: (pcm) => {
        session.socket?.sendAudio(pcm);
        session.samples += pcm.length;
        if (session.ready && !session.stopping) this.setStatus("listenListening", { s: (session.samples / SAMPLE_RATE).toFixed(1) });
      },
    });
    try {
      await session.microphone.start();
    } catch (exc) {
      const denied = exc?.name === "NotAllowedError" || exc?.name === "SecurityError";
      return this.fail(null, denied ? "err_mic_denied" : "err_microphone", { detail: exc?.message || String(exc) });
    }
    this.session = session;
    session.socket = new AsrSocket(asrUrl(this.els.model.value), {
      onMessage: (message) => this.heard(session, message),
      onClose: (closed) => this.closed(session, closed),
    });
    this.render();
  }

  heard(session, message) {
    if (message.type === "Ready") {
      session.ready = true;
      this.setStatus("listenListening", { s: (session.samples / SAMPLE_RATE).toFixed(1) });
    } else if (message.type === "Word") {
      this.addWord(message.text, message.start_time);
    } else if (message.type === "EndWord") {
      const last = this.words[this.words.length - 1];
      if (last && last.end === null) this.endWord(last, message.stop_time);
    } else if (message.type === "Step" && message.prs?.length) {
      this.pause = message.prs[Math.min(PAUSE_HEAD, message.prs.length - 1)];
      session.steps = message.step_idx;
      this.renderPause();
    } else if (message.type === "Error") {
      session.errorMessage = message.message;
    }
  }

  async stopMic() {
    const session = this.session;
    if (!session || session.stopping) return;
    session.stopping = true;
    this.setStatus("listenFinishing");
    this.render();
    await session.microphone.stop(); // every captured frame sent
    if (session.ready) session.socket.end(); // the service sends the last words, then closes
    else session.socket.close();
  }

  closed(session, { code, reason }) {
    session.microphone.release();
    this.session = null;
    if (session.errorMessage === NO_FREE_CHANNELS) this.fail(null, "err_no_channels");
    else if (session.errorMessage) this.fail(null, "err_server", { detail: session.errorMessage });
    else if (!session.ready && !session.stopping) this.fail(null, "err_listen_refused", { detail: reason || code });
    else {
      const heard = session.steps ? session.steps * STEP_S : session.samples / SAMPLE_RATE;
      this.setStatus("listenDone", { n: this.words.length, s: heard.toFixed(1) });
      this.finish();
    }
  }

  // ---- a file, over POST v1/audio/transcriptions ------------------------------------------------
  async transcribeFile(file) {
    if (this.busy) return;
    this.begin("listenFileBusy", { name: file.name });
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("model", this.els.model.value);
    form.append("stream", "true");
    try {
      const response = await postForResponse("v1/audio/transcriptions", form);
      let done = null;
      for await (const event of serverSentEvents(response.body)) {
        if (event.type === "transcript.text.delta") this.addWord(event.delta.trim(), null);
        else if (event.type === "transcript.text.done") done = event;
        else if (event.type === "error") throw eventError(event, "the transcription failed");
      }
      if (!done) throw new ApiError(500, "the transcription ended before the last words");
      this.setStatus("listenFileDone", { name: file.name, n: this.words.length, s: done.usage.seconds.toFixed(1) });
      this.finish();
    } catch (exc) {
      this.fail(exc);
    }
  }

  // ---- what the panel shows -------------------------------------------------------------------
  addWord(text, start) {
    const word = { text, start, end: null, el: element("span", "heard", text) };
    if (start !== null) word.el.dataset.start = String(start);
    this.words.push(word);
    this.els.words.append(word.el, " ");
    this.els.empty.hidden = true;
  }

  endWord(word, end) {
    word.end = end;
    word.el.dataset.end = String(end);
    word.el.title = `${word.start.toFixed(2)}–${end.toFixed(2)} s`;
  }

  /** Ends a run with an error: the service's (an ApiError) or `key` with `vars`. */
  fail(exc, key = null, vars = {}) {
    this.session?.microphone.release();
    this.status = null;
    const shared = sharedFailure(exc);
    if (key) this.setError(key, vars);
    else if (shared) this.setError(shared.key, shared.vars);
    else if (exc instanceof ApiError && exc.code === "no_stt_model") this.setError("err_no_stt");
    else this.setError("err_server", { detail: exc?.message || String(exc) });
    this.finish();
  }

  setStatus(key, vars = {}) {
    this.status = key ? { key, vars } : null;
    this.els.status.textContent = key ? t(key, vars) : "";
  }

  setError(key, vars = {}) {
    this.error = key ? { key, vars } : null;
    showError(this.els.error, key ? t(key, vars) : null);
  }

  renderPause() {
    const { pause } = this.els;
    pause.hidden = this.pause === null;
    if (this.pause === null) return;
    const paused = this.pause >= 0.5;
    pause.classList.toggle("paused", paused);
    pause.textContent = t(paused ? "listenPaused" : "listenSpeaking", { p: Math.round(this.pause * 100) });
  }

  /** Redraws what scripts write (also on a language change). */
  render() {
    const { els } = this;
    const capturing = Boolean(this.session);
    els.micLabel.textContent = t(capturing ? "listenStop" : "listenStart");
    els.mic.classList.toggle("recording", capturing);
    els.mic.disabled = (this.busy && !capturing) || Boolean(this.session?.stopping);
    els.fileButton.classList.toggle("disabled", this.busy);
    els.file.disabled = this.busy;
    els.model.disabled = this.busy;
    els.empty.hidden = this.words.length > 0;
    els.status.textContent = this.status ? t(this.status.key, this.status.vars) : "";
    if (this.error) showError(els.error, t(this.error.key, this.error.vars));
    this.renderPause();
  }
}
