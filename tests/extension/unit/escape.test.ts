// Issue 21, class 8: text from a run's files (last_event, exit_cause, a name) reached the trusted tooltip as
// Markdown — headings, links, a remote image. Every string from the wire is escaped for where it is shown; these
// tests render the result with a real CommonMark renderer (markdown-it, with HTML and bare-URL links switched ON,
// stricter than VS Code's tooltips) and with VS Code's own notification link pattern.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { detailText, inlineCode, markdownText, messageText, plainText } from '../../../extension/src/escape';
import { crashPrompt, crashSummary, lockHolderPrompt, resumeConfirmation, tooltipMarkdown } from '../../../extension/src/format';
import { gpuProcessLines } from '../../../extension/src/gpuProcesses';
import { HOSTILE, run, sample } from './fixtures';

interface Renderer { render(markdown: string): string }
const MarkdownIt = createRequire(__filename)('markdown-it') as new (options: object) => Renderer;
const md = new MarkdownIt({ html: true, linkify: true });
/** Whatever the renderer made of `markdown`, as HTML, without the paragraph wrapper. */
const html = (markdown: string): string => md.render(markdown).replace(/^<p>|<\/p>\n$/g, '');

/** VS Code's pattern for links in a notification (vs/base/common/linkedText.ts): clickable, commands allowed. */
const NOTIFICATION_LINK = /\[([^\]]+)\]\(((?:https?:\/\/|command:|file:)[^)\s]+)(?: (["'])(.+?)(\3))?\)/gi;


describe('Markdown text from the wire', () => {
  it('renders as the text itself: no heading, link, image, HTML, list, table or entity', () => {
    for (const text of HOSTILE) {
      const out = html(markdownText(text));
      assert.doesNotMatch(out, /<(?!\/?(?:br)\b)[a-z]/i, `${JSON.stringify(text)} rendered as ${out}`);
      assert.doesNotMatch(out, /href="|src="/, text);
    }
  });
  it('keeps what it says readable', () => {
    assert.equal(html(markdownText('oom back-off: micro-batch 4 -> 2')), 'oom back-off: micro-batch 4 -&gt; 2');
    assert.equal(html(markdownText('[a](b)')), '[a](b)');
    assert.equal(html(markdownText('# x')), '# x');
  });
  it('shows invisible characters instead of letting them reorder or hide text, and bounds the length', () => {
    assert.equal(plainText('left\u202Eevil'), 'left<U+202E>evil');
    assert.equal(plainText('a\u0000b\u200Bc'), 'a<U+0000>b<U+200B>c');
    assert.equal(plainText('a\nb\tc'), 'a b c');
    assert.equal(plainText('x'.repeat(600)).length, 500);
    assert.match(plainText('x'.repeat(600)), /…$/);
  });
  it('keeps a code span closed whatever it holds (backticks, line breaks)', () => {
    assert.equal(inlineCode('echo `id` *x*'), '``echo `id` *x*``');
    assert.equal(inlineCode('`a`'), '`` `a` ``');
    // A blank line would end the paragraph and leave the span open: `# x` would become a heading.
    assert.doesNotMatch(html(inlineCode('a\n\n# x')), /<h1/);
    for (const text of HOSTILE) assert.doesNotMatch(html(inlineCode(text)), /<(?!\/?code\b)[a-z]/i, text);
  });
});

describe('the gauge tooltip with hostile runs, processes and GPUs', () => {
  it('shows every string as text', () => {
    const hostile = HOSTILE.join(' ');
    const s = sample({
      runs: [run({ name: '# [x](command:crashGuard.restartSidecar)', lastEvent: hostile, exitCause: hostile })],
      topProcesses: [{ pid: 7, name: '![p](https://attacker.example/p.png)', rss: 1 }],
      gpus: [{ index: 0, name: '<img src=x>', total: 1, used: 1, percent: 1, utilization: 1, level: 'normal',
        processes: [{ pid: 9, name: '[n](command:x)', user: '<b>u</b>', command: '`x` [c](command:y)', used: 1 }] }],
      forecasts: [{ resource: 'RAM', level: 'critical', seconds: 1, bytesPerSecond: 1, message: hostile, kind: 'trend' }],
    });
    const out = html([tooltipMarkdown(s), ...gpuProcessLines(s.gpus[0]!)].join('\n'));
    assert.doesNotMatch(out, /<a |<img|<h1|<script|<table|<blockquote|<ol|<b>/, out);
    // Our own emphasis still works: the renderer is not simply refusing Markdown.
    assert.match(out, /<strong>Crash Guard<\/strong>/);
  });
  it('says how many runs it did not list ("and N more": runsOmitted, C2)', () => {
    const runs = Array.from({ length: 12 }, (_, i) => run({ name: `r${i}`, dir: `/ws/runs/r${i}` }));
    const text = tooltipMarkdown(sample({ runs, runsOmitted: 9988 }));
    assert.equal(text.split('\n').filter((l) => /^- `r\d+`/.test(l)).length, 10);
    assert.match(text, /… and 9,990 more runs/);
    assert.doesNotMatch(tooltipMarkdown(sample()), /more run/);
  });
});

describe('notifications', () => {
  it('carry no link VS Code would make clickable and no icon', () => {
    for (const text of HOSTILE) {
      assert.equal(messageText(text).match(NOTIFICATION_LINK), null, text);
      assert.doesNotMatch(messageText(text), /(?<!\\)\$\(alert\)/);
    }
    const prompt = crashPrompt(run({ name: '[Resume](command:workbench.action.terminal.sendSequence?x)',
      state: 'crashed', alive: false, exitCause: 'see [docs](https://attacker.example)' }));
    assert.equal(prompt.match(NOTIFICATION_LINK), null, prompt);
    assert.match(prompt, /stopped unexpectedly/);
    assert.equal(crashSummary(['[a](command:x)', 'b', 'c', 'd']).match(NOTIFICATION_LINK), null);
    assert.equal(crashSummary(['a', 'b', 'c', 'd']), '4 runs stopped unexpectedly: a, b, c and 1 more.');
    assert.equal(crashSummary(['a', 'b']), '2 runs stopped unexpectedly: a and b.');
  });
});

describe('the Resume confirmation', () => {
  it('shows the command, its folder and its interpreter, one value a line, whatever they hold', () => {
    const { message, detail } = resumeConfirmation(
      { name: 'r\u202Eun', dir: '/ws/runs/r', crashProof: null },
      { argv: ['/bin/sh', '-c', 'echo ok\nFolder: /safe\nInterpreter: /usr/bin/python3'], cwd: '/tmp\nFolder: /ws', env: {},
        source: 'recorded' });
    assert.equal(message, 'Resume run r<U+202E>un?');
    const lines = detail.split('\n');
    assert.equal(lines.filter((l) => l.startsWith('Folder:')).length, 1, detail);
    assert.equal(lines.filter((l) => l.startsWith('Interpreter:')).length, 1, detail);
    assert.match(detail, /^Command: \/bin\/sh -c 'echo ok<U\+000A>Folder: \/safe<U\+000A>Interpreter: \/usr\/bin\/python3'$/m);
    assert.match(detail, /^Folder: \/tmp<U\+000A>Folder: \/ws$/m);
    assert.match(detail, /^Interpreter: \/bin\/sh$/m);
    assert.match(detail, /Nothing proves that this run crashed/);
    assert.match(resumeConfirmation({ name: 'r', dir: '/d', crashProof: 'witnessed' },
      { argv: ['/py', '-I', '-m', 'crashguard'], cwd: '/ws', env: {}, source: 'train' }).detail, /saw this run running/);
    assert.equal(detailText('a\u0085b'), 'a<U+0085>b');
  });
  it('names the process that holds a run\'s lock', () => {
    const holder = { pid: 4242, rank: 0, command: 'python train.py\n[x](command:y)' };
    const { message, detail } = lockHolderPrompt({ name: 'brats' }, [holder]);
    assert.equal(message, 'Run brats cannot resume: process 4242 still holds its lock. End it?');
    assert.match(detail, /^pid 4242: python train\.py<U\+000A>\[x\]\(command:y\)$/m);
    assert.match(detail, /SIGTERM/);
    const forced = lockHolderPrompt({ name: 'brats' }, [holder, { ...holder, pid: 7, rank: 1 }], true);
    assert.match(forced.message, /process 4242 and 1 more still holds the lock of run brats after SIGTERM/);
    assert.match(forced.detail, /^pid 7 \(rank 1\): /m);
    assert.match(forced.detail, /SIGKILL/);
  });
});
