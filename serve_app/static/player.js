// The result area: audio player, download link and the words, the spoken one highlighted.
//
// Where the audio comes from is the caller's business: `show()` takes a URL that the <audio>
// element can play (a saved file today; a MediaSource or blob URL fed by a stream works the same),
// and the words may arrive later through `setWords()`.

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
    this.audio.addEventListener("play", () => this.follow());
    this.audio.addEventListener("seeked", () => this.highlight());
    this.audio.addEventListener("timeupdate", () => this.highlight());
    this.audio.addEventListener("ended", () => this.highlight());
  }

  /** Loads a new clip: `src` for the player, `downloadUrl`/`filename` for the download link. */
  show({ src, downloadUrl = src, filename }) {
    this.container.hidden = false;
    this.audio.src = src;
    this.audio.load();
    // Pressing Generate was the user's gesture, so browsers let the clip start on its own.
    this.audio.play().catch(() => {});
    this.download.href = downloadUrl;
    this.download.download = filename;
    this.setWords([]);
  }

  describe(text) {
    this.info.textContent = text;
  }

  /** Words as [{word, start_s, end_s}], in time order. */
  setWords(words) {
    this.words = words || [];
    this.current = -1;
    this.spans = this.words.map((w) => {
      const span = document.createElement("span");
      span.className = "word";
      span.textContent = w.word;
      span.title = `${w.start_s.toFixed(2)}–${w.end_s.toFixed(2)} s`;
      span.addEventListener("click", () => {
        this.audio.currentTime = w.start_s;
        this.audio.play().catch(() => {});
        this.highlight();
      });
      return span;
    });
    this.wordsBox.replaceChildren(...this.spans.flatMap((s, i) => (i ? [" ", s] : [s])));
    this.wordsBox.classList.toggle("empty", !this.words.length);
    if (!this.words.length) this.wordsBox.textContent = t("noWords");
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
