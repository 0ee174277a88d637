// The method names in extension/src/protocol.ts must match docs/protocol.md and python_backend/sidecar/protocol.py.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import * as P from '../../../extension/src/protocol';

const ROOT = path.resolve(__dirname, '../../../../..');
const ours = new Set<string>([...P.NOTIFICATIONS, ...P.REQUESTS]);

function namesIn(text: string): Set<string> {
  return new Set(text.match(/crashGuard\/[A-Za-z]+/g) ?? []);
}

describe('protocol mirror', () => {
  it('exports every method as a constant', () => {
    const constants = Object.entries(P).filter(([k]) => k.startsWith('METHOD_')).map(([, v]) => v as string);
    for (const m of ours) assert.ok(constants.includes(m), m);
  });
  it('covers every method of docs/protocol.md', () => {
    const doc = namesIn(fs.readFileSync(path.join(ROOT, 'docs', 'protocol.md'), 'utf8'));
    assert.ok(doc.size >= 9);
    for (const m of doc) assert.ok(ours.has(m), `${m} is in docs/protocol.md but not in protocol.ts`);
  });
  it('matches python_backend/sidecar/protocol.py exactly', () => {
    const file = path.join(ROOT, 'python_backend', 'sidecar', 'protocol.py');
    const py = namesIn(fs.readFileSync(file, 'utf8'));
    assert.deepEqual([...ours].sort(), [...py].sort());
  });
});
