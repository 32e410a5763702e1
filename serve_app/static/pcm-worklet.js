// The audio thread's half of microphone.js (an AudioWorklet processor, "pcm-frames"): the input's
// first channel (the node mixes the microphone down to one) cut into frames of `frameSamples` at
// `targetRate`, each posted to the page as a Float32Array (its buffer transferred, not copied).
// Where the context could not run at `targetRate` (a browser that will not resample a microphone),
// the samples are resampled here by linear interpolation. A "flush" message posts the partial
// frame, then null: the page knows every sample it captured has been handed over.

class PcmFrames extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { frameSamples, targetRate } = options.processorOptions;
    this.size = frameSamples;
    this.step = sampleRate / targetRate; // input samples per output sample (1: no resampling)
    this.position = 0; // where the next output sample falls, in input samples from `this.previous`
    this.previous = 0; // the last input sample of the previous block (interpolation across blocks)
    this.frame = new Float32Array(this.size);
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data !== "flush") return;
      this.post();
      this.port.postMessage(null);
    };
  }

  push(sample) {
    this.frame[this.filled++] = sample;
    if (this.filled === this.size) this.post();
  }

  post() {
    if (!this.filled) return;
    const frame = this.frame.slice(0, this.filled);
    this.port.postMessage(frame, [frame.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const samples = inputs[0]?.[0];
    if (!samples) return true; // no input connected yet, or the track was stopped
    if (this.step === 1) {
      for (let i = 0; i < samples.length; i++) this.push(samples[i]);
      return true;
    }
    // Input sample k of this block is at k + 1 from `previous` (which sits at 0).
    for (; this.position <= samples.length; this.position += this.step) {
      const index = Math.floor(this.position);
      const before = index === 0 ? this.previous : samples[index - 1];
      const after = index === samples.length ? before : samples[index];
      this.push(before + (after - before) * (this.position - index));
    }
    this.position -= samples.length;
    this.previous = samples[samples.length - 1];
    return true;
  }
}

registerProcessor("pcm-frames", PcmFrames);
