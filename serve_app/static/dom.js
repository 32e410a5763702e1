// Small DOM helpers shared by the page's modules.

export function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Shows `message` in an error box next to its control, or hides the box when message is empty. */
export function showError(box, message) {
  box.hidden = !message;
  box.textContent = message || "";
}
