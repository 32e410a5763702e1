// Kyutai's ASR WebSocket (`/api/asr-streaming`) from the page: the protocol is moshi-server's
// (serve_app/protocols/kyutai_asr.py says it in full): MessagePack maps both ways, audio as
// `{type: "Audio", pcm: [float32 ...]}` at 24 kHz mono, the single byte 0 to end the audio; the
// service answers Ready, Word, EndWord, Step, Marker and Error, then closes. The codec is
// @msgpack/msgpack (static/vendor/msgpack.min.js, a classic script the page loads before its
// modules: it sets `MessagePack`).

import { withKey } from "./api.js";

export const SAMPLE_RATE = 24000;
export const FRAME_SAMPLES = 1920; // 80 ms: one model step
const END_OF_AUDIO = new Uint8Array([0]);

/** The socket's URL for `model` (the page's own origin and path; the API key, if any, as `auth_id`). */
export function asrUrl(model) {
  const url = new URL(withKey("api/asr-streaming"), document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("model", model);
  return url.href;
}

export class AsrSocket {
  /** Opens the socket; `onMessage(message)` gets each of the service's messages (decoded),
   * `onClose({code, reason})` once the socket is closed. Audio sent before `Ready` waits here. */
  constructor(url, { onMessage, onClose }) {
    this.ready = false;
    this.waiting = [];
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.ws.addEventListener("message", (event) => {
      if (typeof event.data === "string") return; // not part of the protocol
      const message = MessagePack.decode(new Uint8Array(event.data));
      if (message?.type === "Ready") this.becomeReady();
      onMessage(message);
    });
    this.ws.addEventListener("close", (event) => onClose({ code: event.code, reason: event.reason }));
  }

  becomeReady() {
    this.ready = true;
    this.waiting.splice(0).forEach((data) => this.ws.send(data));
  }

  /** A piece of audio (Float32Array at 24 kHz), sent as float32 numbers. */
  sendAudio(pcm) {
    this.send(MessagePack.encode({ type: "Audio", pcm: Array.from(pcm) }, { forceFloat32: true }));
  }

  /** No more audio: the service hears what it holds, sends the last words, then closes. */
  end() {
    this.send(END_OF_AUDIO);
  }

  send(data) {
    if (this.ws.readyState > WebSocket.OPEN) return; // closing or closed: nobody hears it
    if (this.ready) this.ws.send(data);
    else this.waiting.push(data);
  }

  close() {
    if (this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
  }
}
