// The memory report's webview (media/report.js) with hostile strings (issue 21: escape everything shown): a run's
// name and last event, a process name, a GPU process's command, an event message written from a run's files. The
// real script runs in a VM against a minimal DOM that records every element made and throws on any HTML sink
// (innerHTML, outerHTML, insertAdjacentHTML, document.write): every string must arrive as text.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import * as vm from 'node:vm';
import { buildView, ReportData } from '../../../extension/src/report/model';
import { HOSTILE, run, sample } from './fixtures';

const ROOT = path.resolve(__dirname, '../../../../..');
const SCRIPT = fs.readFileSync(path.join(ROOT, 'media', 'report.js'), 'utf8');

class FakeNode {
  children: FakeNode[] = [];
  attributes = new Map<string, string>();
  dataset: Record<string, string> = {};
  style: Record<string, string> = {};
  tBodies: FakeNode[] = [];
  private text = '';
  constructor(readonly tag: string) {}
  get textContent(): string {
    return this.text + this.children.map((c) => c.textContent).join('');
  }
  set textContent(value: string) {
    this.children = [];
    this.text = value;
  }
  set innerHTML(_: string) { throw new Error('innerHTML used'); }
  set outerHTML(_: string) { throw new Error('outerHTML used'); }
  insertAdjacentHTML(): void { throw new Error('insertAdjacentHTML used'); }
  setAttribute(name: string, value: string): void {
    if (/^on/i.test(name)) throw new Error(`event handler attribute ${name}`);
    this.attributes.set(name, value);
  }
  append(...nodes: FakeNode[]): void { this.children.push(...nodes); }
  replaceChildren(...nodes: FakeNode[]): void { this.children = [...nodes]; this.text = ''; }
  addEventListener(): void { /* the window buttons: not clicked here */ }
  all(): FakeNode[] { return [this, ...[...this.tBodies, ...this.children].flatMap((c) => c.all())]; }
}

function fakeDocument(made: FakeNode[]) {
  const byId = new Map<string, FakeNode>();
  for (const id of ['chart', 'status', 'summary', 'legend', 'events']) byId.set(id, new FakeNode(id));
  for (const id of ['runs', 'processes', 'gpuProcesses']) {
    const table = new FakeNode('table');
    table.tBodies = [new FakeNode('tbody')];
    byId.set(id, table);
  }
  const make = (tag: string): FakeNode => {
    const node = new FakeNode(tag);
    made.push(node);
    return node;
  };
  return {
    byId,
    document: {
      getElementById: (id: string) => byId.get(id),
      createElement: make,
      createElementNS: (_ns: string, tag: string) => make(tag),
      createTextNode: (text: string) => {
        const node = new FakeNode('#text');
        node.textContent = text;
        return node;
      },
      querySelectorAll: () => [],
      write: () => { throw new Error('document.write used'); },
    },
  };
}

describe('the memory report webview', () => {
  it('puts every string from the wire in as text, whatever it holds', () => {
    const hostile = HOSTILE.join(' ');
    const data = new ReportData();
    data.addSample(sample({
      runs: [run({ name: '<img src=x onerror=alert(1)>', lastEvent: hostile, exitCause: hostile, state: 'crashed', alive: false })],
      topProcesses: [{ pid: 7, name: '<script>alert(1)</script>', rss: 1 }],
      gpus: [{ index: 0, name: '<b>GPU</b>', total: 1, used: 1, percent: 1, utilization: 1, level: 'normal',
        processes: [{ pid: 9, name: '<i>n</i>', user: '<u>u</u>', command: '<iframe src=//x>', used: 1 }] }],
    }));
    data.addHistory({ points: [], events: [{ time: data.points[0]?.time ?? 0, kind: 'training', level: null,
      message: `<svg onload=alert(1)> ${hostile}`, resource: null, run: null }], thresholds: sample().thresholds,
    gpuNames: ['<b>GPU</b>'], intervalMs: 1000, maxPoints: 900 });
    const view = buildView(data, 300, 'sidecar running');

    const made: FakeNode[] = [];
    const { byId, document } = fakeDocument(made);
    let onMessage: ((e: { data: unknown }) => void) | undefined;
    const context = {
      document,
      window: { addEventListener: (type: string, cb: (e: { data: unknown }) => void) => { if (type === 'message') onMessage = cb; } },
      acquireVsCodeApi: () => ({ postMessage: () => undefined, setState: () => undefined, getState: () => undefined }),
    };
    vm.runInNewContext(SCRIPT, context);
    assert.ok(onMessage, 'report.js listens for the view');
    onMessage({ data: { type: 'view', view } });

    // Only the elements report.js itself builds: no tag came from the data.
    const tags = new Set(made.map((n) => n.tag));
    for (const tag of tags) {
      assert.ok(['svg', 'g', 'line', 'text', 'title', 'path', 'circle', 'span', 'li', 'tr', 'td'].includes(tag), `made a <${tag}>`);
    }
    const shown = [...byId.values()].flatMap((n) => n.all()).map((n) => n.textContent).join('\n');
    for (const text of ['<img src=x onerror=alert(1)>', '<script>alert(1)</script>', '<iframe src=//x>', '<u>u</u>',
      '<svg onload=alert(1)>', '[click](command:workbench.action.terminal.sendSequence']) {
      assert.ok(shown.includes(text), `${text} is shown as text`);
    }
    // No attribute value came from a run's text (style colours and geometry are the model's own).
    for (const node of made) {
      for (const [name, value] of node.attributes) assert.doesNotMatch(value, /alert|attacker|command:/, `${node.tag} ${name}`);
    }
  });
});
