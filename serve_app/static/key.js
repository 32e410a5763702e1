// The API key prompt: shown when the service refuses a request for want of a key (api.js). One
// answer serves every request waiting for it; a refused key brings the prompt back with a message.

import { showError } from "./dom.js";
import { t } from "./i18n.js";

export class KeyPrompt {
  constructor({ form, input, error }) {
    this.form = form;
    this.input = input;
    this.error = error;
    this.refused = false;
    this.answer = null;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const key = this.input.value.trim();
      if (!key || !this.answer) return;
      const answer = this.answer;
      this.answer = null;
      this.refused = false;
      this.render();
      this.form.hidden = true;
      this.input.value = "";
      answer(key);
    });
  }

  /** Shows the prompt; resolves with the key typed in. `refused`: the last key was refused. */
  ask(refused) {
    this.refused = refused;
    this.render();
    this.form.hidden = false;
    this.input.focus();
    return new Promise((resolve) => (this.answer = resolve));
  }

  /** Redraws the refusal message (in the new language on a switch). */
  render() {
    showError(this.error, this.refused ? t("err_key_refused") : null);
  }
}
