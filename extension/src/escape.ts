// Text from the wire is hostile (issue 21): a run's name, last event and exit cause, a process name or command, a
// path come from files anyone can write. Each place that shows text has its own syntax, so each has its own escape:
// - Markdown tooltips (MarkdownString, trusted for a few command links): every ASCII punctuation character is
//   backslash-escaped, so no heading, link, image, HTML, autolink or command link can form (`markdownText`), or the
//   text goes into a code span whose fence is longer than any backtick run in it (`inlineCode`);
// - notifications, which VS Code scans for `[label](https:|command:|file:…)` links (clickable, commands allowed) and
//   `$(icon)` names (`messageText`);
// - a modal's detail, shown as plain text with its line breaks (`detailText`): a line break inside a value would
//   let a value forge the lines after it, so it is shown as <U+000A>.
// Everywhere: control characters, bidirectional overrides and zero-width characters (which make text read other
// than it is) are shown as <U+XXXX> or a space, and every value is bounded. Pure: no 'vscode' import.

/** C0/C1 controls, soft hyphen, bidirectional marks/overrides/isolates, zero-width and other invisible formatting. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufeff\ufff9-\ufffb]/g;
const LINE_BREAKS = /[\n\r\t\u2028\u2029]/g;
/** What a value is cut to by default (the wire's own bound for free text is 500 characters, C2). */
export const MAX_SHOWN_CHARS = 500;

function codePoint(c: string): string {
  return `<U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}>`;
}

/** `text` cut to `max` characters (… marks the cut). */
export function bounded(text: string, max = MAX_SHOWN_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
}

/** Invisible characters made visible; line breaks and tabs become a space (or, with `breaksAsSpace: false`, <U+000A>). */
export function plainText(text: string, options: { breaksAsSpace?: boolean; max?: number } = {}): string {
  const { breaksAsSpace = true, max = MAX_SHOWN_CHARS } = options;
  const flat = breaksAsSpace ? text.replace(LINE_BREAKS, ' ') : text;
  return bounded(flat, max).replace(INVISIBLE, codePoint);
}

/** Text inside Markdown: shown as it reads, never as Markdown, HTML, a link or an icon. */
export function markdownText(text: string, max = MAX_SHOWN_CHARS): string {
  return plainText(text, { max }).replace(/[!-/:-@[-`{-~]/g, '\\$&');
}

/** `text` as a Markdown code span, whatever backticks it holds (a fence longer than its longest run). */
export function inlineCode(text: string, max = MAX_SHOWN_CHARS): string {
  const flat = plainText(text, { max });
  const longest = Math.max(0, ...(flat.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longest + 1);
  const pad = flat.startsWith('`') || flat.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${flat}${pad}${fence}`;
}

/** Text of a notification: one line, no link VS Code would make clickable, no icon. */
export function messageText(text: string, max = 1000): string {
  return plainText(text, { max })
    // VS Code links `[label](https://…|command:…|file:…)` in a notification: a space keeps the text, not the link.
    .replace(/\]\(/g, '] (')
    .replace(/\$\(([a-z0-9-]+(?:~[a-z0-9-]*)?)\)/gi, '\\$($1)');
}

/** A value inside a modal's detail: one line, whatever it holds. */
export function detailText(text: string, max = 2000): string {
  return plainText(text, { breaksAsSpace: false, max });
}
