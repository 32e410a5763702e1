// A clip from the microphone (MediaRecorder): start, stop, and the recording as a Blob in the
// browser's own format (webm/opus in Chromium, ogg or mp4 elsewhere; the service decodes any).

const EXTENSIONS = { "audio/webm": "webm", "audio/ogg": "ogg", "audio/mp4": "m4a", "audio/wav": "wav" };

export function canRecord() {
  return Boolean(navigator.mediaDevices?.getUserMedia && window.MediaRecorder);
}

export class Recorder {
  /** `onTick(seconds)` while recording; `maxSeconds`: recording stops by itself there. */
  constructor({ onTick, maxSeconds }) {
    this.onTick = onTick;
    this.maxSeconds = maxSeconds;
    this.recorder = null;
  }

  get recording() {
    return this.recorder?.state === "recording";
  }

  /** Asks for the microphone and starts; resolves, once stopped, with {blob, filename}. */
  async start() {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    this.recorder = new MediaRecorder(stream);
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    const ticker = setInterval(() => {
      this.onTick(seconds());
      if (seconds() >= this.maxSeconds) this.stop();
    }, 200);
    const done = new Promise((resolve, reject) => {
      this.recorder.addEventListener("dataavailable", (event) => event.data.size && chunks.push(event.data));
      this.recorder.addEventListener("error", (event) => reject(event.error ?? new Error("recording failed")));
      this.recorder.addEventListener("stop", () => {
        clearInterval(ticker);
        stream.getTracks().forEach((track) => track.stop()); // the browser's "recording" indicator goes off
        const type = this.recorder.mimeType.split(";")[0] || "audio/webm";
        resolve({ blob: new Blob(chunks, { type }), filename: `recording.${EXTENSIONS[type] ?? "webm"}` });
      });
    });
    this.recorder.start(250);
    this.onTick(0);
    return done;
  }

  stop() {
    if (this.recording) this.recorder.stop();
  }
}
