// "Your own voice": a clip recorded from the microphone or chosen from the disk becomes a voice of
// the service's cloning model (POST api/voices, multipart: file, name, consent, model); the
// user's voices of that model are listed here with a delete button. The upload needs the consent
// box ticked; the service's refusals are shown as it words them. A service that takes no uploads
// (no API keys and no anonymous uploads: the listing's `uploads_allowed`) is said so up front, and
// the recording and upload controls are off.

import { ApiError, deleteJSON, getJSON, postForm } from "./api.js";
import { element, showError } from "./dom.js";
import { t } from "./i18n.js";
import { Recorder, canRecord } from "./recorder.js";

// What the service stores as the speaker's consent (its `consent` field): the statement the box
// asks the user to confirm, always in English so that every record reads alike.
const CONSENT = "Confirmed in the web page: the speaker agreed to a voice being made from this recording.";
const MAX_RECORD_S = 30; // the service takes 3 to 30 s of sound (voice_clip_max_s)

export class OwnVoices {
  /** `els`: the panel's elements; `onChange(voice)`: a voice was made (voice) or deleted (null). */
  constructor(els, { onChange }) {
    this.els = els;
    this.onChange = onChange;
    this.model = null; // the cloning model's name; null: the service has none, the panel stays hidden
    this.clip = null; // {blob, filename}: the recording or the chosen file
    this.voices = [];
    this.attribution = null;
    this.uploadsAllowed = true;
    this.uploadControls = [els.record, els.file, els.name, els.consent, els.upload];
    this.error = null; // {key, vars}: redrawn on a language change
    this.status = null;
    this.recordedS = null; // seconds recorded so far (null: the clip is not a recording)
    this.recorder = new Recorder({ onTick: (s) => { this.recordedS = s; this.render(true); }, maxSeconds: MAX_RECORD_S });
    els.record.hidden = !canRecord();
    els.record.addEventListener("click", () => this.toggleRecording());
    els.file.addEventListener("change", () => {
      const file = els.file.files[0];
      if (!file) return;
      this.recordedS = null;
      this.useClip({ blob: file, filename: file.name });
      this.render();
    });
    els.upload.addEventListener("click", () => this.upload());
    els.consent.addEventListener("change", () => els.consent.checked && this.error?.key === "err_consent" && this.setError(null));
  }

  /** Shows the panel for the cloning model `model` (null: none, hidden) and lists its voices. */
  async setModel(model) {
    this.model = model;
    this.els.panel.hidden = !model;
    if (model) await this.refresh();
  }

  async refresh() {
    try {
      const listing = await getJSON(`api/voices?model=${encodeURIComponent(this.model)}`);
      this.voices = listing.uploaded ?? [];
      this.attribution = listing.attribution ?? null;
      this.setUploadsAllowed(listing.uploads_allowed !== false);
    } catch (exc) {
      this.fail(exc);
    }
    this.render();
  }

  setUploadsAllowed(allowed) {
    this.uploadsAllowed = allowed;
    this.els.uploadsOff.hidden = allowed;
    for (const control of this.uploadControls) control.disabled = !allowed;
  }

  async toggleRecording() {
    if (this.recorder.recording) return this.recorder.stop();
    this.setError(null);
    this.render(true);
    try {
      const clip = await this.recorder.start();
      this.render(false);
      this.useClip(clip);
    } catch (exc) {
      this.recordedS = null;
      this.render(false);
      this.setError("err_microphone", { detail: exc?.message || String(exc) });
    }
  }

  useClip(clip) {
    this.clip = clip;
    if (this.els.preview.src) URL.revokeObjectURL(this.els.preview.src);
    this.els.preview.src = URL.createObjectURL(clip.blob);
    this.els.preview.hidden = false;
    this.els.clipName.textContent = clip.filename;
    if (!this.els.name.value.trim()) this.els.name.value = clip.filename.replace(/\.[^.]+$/, "");
    this.setError(null);
  }

  async upload() {
    if (this.els.upload.disabled) return;
    this.status = null;
    if (!this.clip) return this.setError("err_no_clip");
    if (!this.els.name.value.trim()) return this.setError("err_no_name");
    if (!this.els.consent.checked) return this.setError("err_consent");
    const form = new FormData();
    form.append("file", this.clip.blob, this.clip.filename);
    form.append("name", this.els.name.value.trim());
    form.append("consent", CONSENT);
    form.append("model", this.model);
    this.els.upload.disabled = true;
    this.setError(null);
    try {
      const voice = await postForm("api/voices", form);
      this.status = { key: "uploaded", vars: { name: voice.name } };
      this.els.consent.checked = false; // consent is asked again for the next clip
      await this.refresh();
      this.onChange(voice);
    } catch (exc) {
      this.fail(exc);
    } finally {
      this.els.upload.disabled = !this.uploadsAllowed;
      this.render();
    }
  }

  async remove(voice) {
    this.setError(null);
    try {
      await deleteJSON(`api/voices/${encodeURIComponent(voice.id)}`);
      this.status = { key: "deleted", vars: { name: voice.name } };
      await this.refresh();
      this.onChange(null);
    } catch (exc) {
      this.fail(exc);
    }
  }

  fail(exc) {
    if (exc instanceof ApiError && exc.status === 0) return this.setError("err_network");
    this.setError("err_server", { detail: exc.message }); // the service's own words
  }

  setError(key, vars = {}) {
    this.error = key ? { key, vars } : null;
    showError(this.els.error, key ? t(key, vars) : null);
  }

  /** Redraws what scripts write (also on a language change). */
  render(recording = this.recorder.recording) {
    const { els } = this;
    els.recordLabel.textContent = t(recording ? "stopRecording" : "record");
    els.record.classList.toggle("recording", recording);
    const seconds = this.recordedS?.toFixed(1);
    els.recordTime.textContent = seconds === undefined ? "" : t(recording ? "recording" : "recorded", { s: seconds });
    els.status.textContent = this.status ? t(this.status.key, this.status.vars) : "";
    els.list.replaceChildren(...this.voices.map((voice) => {
      const remove = element("button", "small", t("deleteVoice"));
      remove.type = "button";
      remove.dataset.voice = voice.id;
      remove.addEventListener("click", () => this.remove(voice));
      const item = element("li", "own-voice");
      item.append(element("span", "own-voice-name", voice.name),
        element("span", "muted", t("voiceSeconds", { s: voice.duration_s.toFixed(1) })), remove);
      item.dataset.voice = voice.id;
      return item;
    }));
    els.empty.hidden = this.voices.length > 0;
    els.attribution.textContent = this.attribution ?? "";
    if (this.error) showError(els.error, t(this.error.key, this.error.vars));
  }
}
