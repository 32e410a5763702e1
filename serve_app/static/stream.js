// Streamed synthesis: POST /api/tts with {stream: true, timestamps: true} answers Server-Sent Events
// (`audio`: a base64 piece of the encoded file, `word`: {word, start_s, end_s}, then `done`, or
// `error`). The audio pieces go into a MediaSource, so the <audio> element starts playing with the
// first of them while the rest is still being generated.

import { ApiError, postForResponse } from "./api.js";

// Formats whose byte stream a MediaSource accepts as it comes (WAV, FLAC and Ogg are not among them).
const STREAM_TYPES = { mp3: "audio/mpeg", aac: "audio/aac" };

export function canStream(format) {
  const type = STREAM_TYPES[format];
  return Boolean(type && window.MediaSource && MediaSource.isTypeSupported(type));
}

/**
 * Speaks `request` (text, voice, cfg_coef, format) as a stream. Calls onStart(src) with a URL for
 * the <audio> element as soon as the service accepted the request, onWord(word) for each word.
 * Resolves with {blob (the whole file), done (the final event: duration_s, voice, gpu, replica,
 * words)}; rejects with ApiError (a refusal, or a failure midway).
 */
export async function streamSpeech(request, { onStart, onWord }) {
  const type = STREAM_TYPES[request.format];
  const response = await postForResponse("api/tts", { ...request, stream: true, timestamps: true });
  const source = new MediaSource();
  const opened = new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
  onStart(URL.createObjectURL(source));
  await opened;
  const buffer = source.addSourceBuffer(type);
  const pieces = [];
  let done = null;
  for await (const event of serverSentEvents(response.body)) {
    if (event.type === "audio") {
      const bytes = base64Bytes(event.audio);
      pieces.push(bytes);
      await append(buffer, bytes);
    } else if (event.type === "word") {
      onWord({ word: event.word, start_s: event.start_s, end_s: event.end_s });
    } else if (event.type === "done") {
      done = event;
    } else if (event.type === "error") {
      throw eventError(event, "the synthesis failed");
    }
  }
  if (!done) throw new ApiError(500, "the audio stream ended before the synthesis finished");
  if (source.readyState === "open") source.endOfStream();
  return { blob: new Blob(pieces, { type }), done };
}

/** The ApiError an `error` event reports (a failure after the answer had begun). */
export function eventError(event, fallback) {
  const error = event.error || {};
  const status = ["model_unavailable", "overloaded"].includes(error.code) ? 503 : 500;
  return new ApiError(status, error.message || fallback, { code: error.code, param: error.param });
}

/** The JSON `data:` payloads of a text/event-stream body, one object per event. */
export async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    pending += value ?? "";
    const blocks = pending.split(/\r?\n\r?\n/);
    pending = done ? "" : blocks.pop();
    for (const block of blocks) {
      const data = block.split(/\r?\n/).filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart());
      if (data.length) yield JSON.parse(data.join("\n"));
    }
    if (done) return;
  }
}

function append(buffer, bytes) {
  return new Promise((resolve, reject) => {
    const finish = (event) => {
      buffer.removeEventListener("updateend", finish);
      buffer.removeEventListener("error", finish);
      if (event.type === "error") reject(new Error("the browser could not decode the streamed audio"));
      else resolve();
    };
    buffer.addEventListener("updateend", finish);
    buffer.addEventListener("error", finish);
    buffer.appendBuffer(bytes);
  });
}

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
