// The microphone as raw PCM for streaming (recorder.js records a compressed clip instead): mono
// float32 at `sampleRate`, handed over in frames of `frameSamples` as they are captured. An
// AudioContext at that rate makes the browser resample the microphone (Chromium does); where a
// browser refuses, the context runs at the device's rate and the worklet resamples
// (pcm-worklet.js). Echo cancellation, noise suppression and automatic gain are off: the model
// hears the sound as it is.

const CONSTRAINTS = { audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } };

const FLUSH_WAIT_MS = 500; // a context the browser suspended answers no flush: stop without it

export function canStreamMicrophone() {
  return Boolean(navigator.mediaDevices?.getUserMedia && window.AudioWorkletNode);
}

export class Microphone {
  /** `onFrame(Float32Array)` for each frame, in order. */
  constructor({ sampleRate, frameSamples, onFrame }) {
    this.sampleRate = sampleRate;
    this.frameSamples = frameSamples;
    this.onFrame = onFrame;
    this.stream = null;
    this.context = null;
    this.node = null;
    this.flushed = null;
  }

  /** Asks for the microphone (rejects with the browser's error: NotAllowedError when it is
   * denied) and starts capturing. */
  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia(CONSTRAINTS);
    try {
      const source = this.openContext(this.sampleRate) ?? this.openContext(undefined);
      await this.context.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
      this.node = new AudioWorkletNode(this.context, "pcm-frames", {
        numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1, channelCountMode: "explicit",
        processorOptions: { frameSamples: this.frameSamples, targetRate: this.sampleRate },
      });
      this.node.port.onmessage = (event) => (event.data ? this.onFrame(event.data) : this.flushed?.());
      source.connect(this.node);
      await this.context.resume(); // started by a click: the browser lets it run
    } catch (exc) {
      this.release();
      throw exc;
    }
  }

  /** A context at `rate` (undefined: the device's) and the microphone's node in it; null where the
   * browser cannot feed the microphone into a context at that rate. */
  openContext(rate) {
    this.context = new AudioContext(rate ? { sampleRate: rate } : {});
    try {
      return this.context.createMediaStreamSource(this.stream);
    } catch (exc) {
      this.context.close();
      if (!rate) throw exc;
      return null;
    }
  }

  /** Stops capturing once every captured sample was handed to onFrame; frees the microphone. */
  async stop() {
    if (this.node) {
      const flushed = new Promise((resolve) => (this.flushed = resolve));
      this.node.port.postMessage("flush");
      await Promise.race([flushed, new Promise((resolve) => setTimeout(resolve, FLUSH_WAIT_MS))]);
    }
    this.release();
  }

  /** Frees the microphone (the browser's "recording" indicator goes off) without waiting. */
  release() {
    this.stream?.getTracks().forEach((track) => track.stop());
    if (this.context && this.context.state !== "closed") this.context.close();
    this.node = this.context = this.stream = null;
  }
}
