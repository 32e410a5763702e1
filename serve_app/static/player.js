// The result area: audio player, download link and the words, the spoken one highlighted.
//
// The <audio> element plays whatever URL it is given: a saved file, or a MediaSource that a stream
// is still filling (see stream.js). Words may come all at once or one by one as they are known.

import { t } from "./i18n.js";

export class Player {
  constructor({ container, audio, download, info, words }) {
    this.container = container;
    this.audio = audio;
    this.download = download;
    this.info = info;
    this.wordsBox = words;
    this.words = [];
    this.spans = [];
    this.current = -1;
    this.frame = null;
    this.objectUrls = [];
    this.audio.addEventListener("play", () => this.follow());
    this.audio.addEventListener("seeked", () => this.highlight());
    this.audio.addEventListener("timeupdate", () => this.highlight());
    this.audio.addEventListener("ended", () => this.highlight());
  }

  /** Starts a new clip from `src`; the download link waits for setDownload(). */
  start(src) {
    this.objectUrls.splice(0).forEach((url) => URL.revokeObjectURL(url)); // the previous clip's
    if (src.startsWith("blob:")) this.objectUrls.push(src);
    this.container.hidden = false;
    this.download.hidden = true;
    this.describe("");
    this.clearWords();
    this.audio.src = src;
    // Pressing Generate was the user's gesture, so browsers let the clip start on its own.
    this.audio.play().catch(() => {});
  }

  setDownload(url, filename) {
    if (url.startsWith("blob:")) this.objectUrls.push(url);
    this.download.href = url;
    this.download.download = filename;
    this.download.hidden = false;
  }

  describe(text) {
    this.info.textContent = text;
  }

  /** Words as [{word, start_s, end_s}], in time order. */
  setWords(words) {
    this.clearWords();
    (words || []).forEach((word) => this.addWord(word));
    this.showEmpty();
  }

  clearWords() {
    this.words = [];
    this.spans = [];
    this.current = -1;
    this.wordsBox.replaceChildren();
    this.wordsBox.classList.remove("empty");
  }

  addWord(word) {
    if (!this.words.length) this.clearWords(); // drops the "no words" note
    const span = document.createElement("span");
    span.className = "word";
    span.textContent = word.word;
    span.title = `${word.start_s.toFixed(2)}–${word.end_s.toFixed(2)} s`;
    span.addEventListener("click", () => {
      this.audio.currentTime = word.start_s;
      this.audio.play().catch(() => {});
    });
    if (this.words.length) this.wordsBox.append(" ");
    this.wordsBox.append(span);
    this.words.push(word);
    this.spans.push(span);
  }

  /** Says so when a clip has no words (redrawn in the new language on a switch). */
  showEmpty() {
    if (this.words.length) return;
    this.wordsBox.classList.add("empty");
    this.wordsBox.textContent = t("noWords");
  }

  // timeupdate fires only a few times a second: follow each frame while playing.
  follow() {
    cancelAnimationFrame(this.frame);
    const step = () => {
      this.highlight();
      if (!this.audio.paused && !this.audio.ended) this.frame = requestAnimationFrame(step);
    };
    step();
  }

  highlight() {
    const now = this.audio.currentTime;
    const index = this.words.findIndex((w) => w.start_s <= now && now < w.end_s);
    if (index === this.current) return;
    this.spans[this.current]?.classList.remove("current");
    this.spans[index]?.classList.add("current");
    this.current = index;
  }
}
