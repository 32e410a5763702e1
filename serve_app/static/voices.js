// The voice picker: a search box over a list grouped by voice folder, each voice with its language;
// the user's own voices (uploaded clips of a cloning model) first, under their names.

import { language, t } from "./i18n.js";

export class VoicePicker {
  constructor({ search, select, count }) {
    this.search = search;
    this.select = select;
    this.count = count;
    this.voices = [];
    this.search.addEventListener("input", () => this.render());
  }

  /** Fills the picker with the answer of GET /api/voices ({default, voices: [{id, group, language}],
   * uploaded: [{id, name}]}) and selects `wanted` (else the default voice). */
  load({ default: defaultVoice, voices, uploaded }, wanted = null) {
    const own = (uploaded ?? []).map((v) => ({ id: v.id, name: v.name, own: true }));
    const presets = [...voices].sort((a, b) => (a.group ?? "").localeCompare(b.group ?? "") || a.id.localeCompare(b.id));
    this.voices = [...own, ...presets];
    this.select.dataset.state = "loaded";
    const pick = [wanted, defaultVoice].find((id) => this.voices.some((v) => v.id === id));
    this.render(pick ?? this.voices[0]?.id);
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
      const group = voice.own ? t("uploadedGroup") : voice.group || "—";
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
  if (voice.own) return voice.name;
  // "expresso/ex03-ex01_happy_001_channel1_334s.wav" shows as "ex03-ex01_happy_001_channel1_334s" in group "expresso".
  const inGroup = voice.group && voice.id.startsWith(`${voice.group}/`) ? voice.id.slice(voice.group.length + 1) : voice.id;
  const name = inGroup.replace(/\.wav$/i, "");
  return voice.language ? `${name} · ${languageName(voice.language)}` : name;
}

function searchText(voice) {
  return [voice.id, voice.name, voice.group, voice.language, voice.language && languageName(voice.language)]
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
