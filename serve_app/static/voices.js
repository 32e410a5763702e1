// The voice picker: a search box over a list grouped by voice folder, each voice with its language.

import { language, t } from "./i18n.js";

export class VoicePicker {
  constructor({ search, select, count }) {
    this.search = search;
    this.select = select;
    this.count = count;
    this.voices = [];
    this.search.addEventListener("input", () => this.render());
  }

  /** Fills the picker with the answer of GET /api/voices ({default, voices: [{id, group, language}]}). */
  load({ default: defaultVoice, voices }) {
    this.voices = [...voices].sort((a, b) => (a.group ?? "").localeCompare(b.group ?? "") || a.id.localeCompare(b.id));
    this.select.dataset.state = "loaded";
    this.render(this.voices.some((v) => v.id === defaultVoice) ? defaultVoice : this.voices[0]?.id);
  }

  failed() {
    this.select.dataset.state = "failed";
    this.count.textContent = "";
  }

  get value() {
    return this.select.value || null;
  }

  /** Redraws the list for the current search (and language: language names are translated). */
  render(wanted = this.select.value) {
    const needle = this.search.value.trim().toLowerCase();
    const shown = this.voices.filter((v) => !needle || searchText(v).includes(needle));
    const groups = new Map();
    for (const voice of shown) {
      const group = voice.group || "—";
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push(voice);
    }
    this.select.replaceChildren(...[...groups].map(([group, members]) => {
      const optgroup = document.createElement("optgroup");
      optgroup.label = group;
      for (const voice of members) {
        const option = new Option(label(voice), voice.id);
        option.title = voice.id;
        optgroup.append(option);
      }
      return optgroup;
    }));
    if (shown.some((v) => v.id === wanted)) this.select.value = wanted;
    else if (shown.length) this.select.value = shown[0].id;
    this.count.textContent = this.countText(shown.length);
    const nothingToPick = this.select.dataset.state === "loaded" && !this.voices.length;
    this.select.hidden = this.search.hidden = nothingToPick;
  }

  countText(shown) {
    const state = this.select.dataset.state;
    if (!state) return t("voiceLoading");
    if (state === "failed") return "";
    if (!this.voices.length) return t("voiceDefaultOnly");
    return shown ? t("voiceCount", { shown, total: this.voices.length }) : t("voiceNone");
  }
}

function label(voice) {
  // "expresso/ex03-ex01_happy_001_channel1_334s.wav" shows as "ex03-ex01_happy_001_channel1_334s" in group "expresso".
  const inGroup = voice.group && voice.id.startsWith(`${voice.group}/`) ? voice.id.slice(voice.group.length + 1) : voice.id;
  const name = inGroup.replace(/\.wav$/i, "");
  return voice.language ? `${name} · ${languageName(voice.language)}` : name;
}

function searchText(voice) {
  return [voice.id, voice.group, voice.language, voice.language && languageName(voice.language)]
    .filter(Boolean).join(" ").toLowerCase();
}

/** "fr" -> "French" / "法语" / "フランス語", in the page's language. */
function languageName(code) {
  try {
    return new Intl.DisplayNames([language()], { type: "language" }).of(code) ?? code;
  } catch {
    return code;
  }
}
