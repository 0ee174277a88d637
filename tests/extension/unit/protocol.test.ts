// extension/src/protocol.ts against crashguard (the source of truth): method names, the protocol version and
// every payload field — name, kind, null or not — as tests/extension/protocol_fields.py reads them from the
// dataclasses. A field the extension marks optional (sent only by newer sidecars) may be absent in Python.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import type { Description, PayloadError } from '../../../extension/src/check';
import * as P from '../../../extension/src/protocol';
import { SIDECAR_KEYS } from '../../../extension/src/settings';
import { run } from './fixtures';

const ROOT = path.resolve(__dirname, '../../../../..');
const PYTHON = process.env.CRASH_GUARD_TEST_PYTHON ?? path.join(ROOT, '.venv', 'bin', 'python');
const ours = new Set<string>([...P.NOTIFICATIONS, ...P.REQUESTS, ...P.CLIENT_NOTIFICATIONS]);

interface PyField { kind: string; nullable: boolean; name?: string; of?: PyField }
interface PyProtocol {
  protocolVersion: number; payloads: Record<string, Record<string, PyField>>; settings: string[];
  textLimits: { keys: Record<string, number>; other: number };
}

function namesIn(text: string): Set<string> {
  return new Set(text.match(/crashGuard\/[A-Za-z]+/g) ?? []);
}

const python = (): PyProtocol => JSON.parse(execFileSync(PYTHON, [path.join(ROOT, 'tests', 'extension', 'protocol_fields.py')],
  { cwd: ROOT, encoding: 'utf8' })) as PyProtocol;

/** The TS checkers of protocol.ts by the Python class they mirror. */
function checkers(): Map<string, Description> {
  const out = new Map<string, Description>();
  for (const value of Object.values(P)) {
    const d = (value as { description?: Description }).description;
    if (typeof value === 'function' && d?.kind === 'object' && d.name && d.shape) out.set(d.name, d);
  }
  return out;
}

function compatible(py: PyField, ts: Description): boolean {
  switch (py.kind) {
    case 'integer': return ts.kind === 'integer' || ts.kind === 'number';
    case 'number': return ts.kind === 'number';
    case 'string': return ts.kind === 'string' || ts.kind === 'enum';
    case 'boolean': return ts.kind === 'boolean';
    case 'array': return ts.kind === 'array' && (!py.of || !ts.of || compatible(py.of, ts.of));
    case 'record': return ts.kind === 'record' || ts.kind === 'object'; // TS knows the shape of a dict field
    case 'object': return ts.kind === 'object' && (!py.name || ts.name === py.name);
    default: return false;
  }
}

/** Every difference between one Python dataclass and its checker. */
function differences(name: string, py: Record<string, PyField>, ts: Description): string[] {
  const problems: string[] = [];
  const shape = ts.shape ?? {};
  for (const [key, field] of Object.entries(py)) {
    const mine = shape[key];
    if (!mine) {
      problems.push(`${name}.${key}: sent by Python, not read by protocol.ts`);
      continue;
    }
    if (!compatible(field, mine)) problems.push(`${name}.${key}: Python ${field.kind}${field.name ? ` ${field.name}` : ''}, protocol.ts ${mine.kind}${mine.name ? ` ${mine.name}` : ''}`);
    if (field.nullable !== mine.nullable) problems.push(`${name}.${key}: nullable in ${field.nullable ? 'Python' : 'protocol.ts'} only`);
  }
  for (const [key, mine] of Object.entries(shape)) {
    if (!(key in py) && !mine.optional) problems.push(`${name}.${key}: required by protocol.ts, not sent by Python`);
  }
  return problems;
}

describe('protocol mirror', () => {
  const py = python();
  it('exports every method as a constant', () => {
    const constants = Object.entries(P).filter(([k]) => k.startsWith('METHOD_')).map(([, v]) => v as string);
    for (const m of ours) assert.ok(constants.includes(m), m);
  });
  it('covers every method of docs/protocol.md', () => {
    const doc = namesIn(fs.readFileSync(path.join(ROOT, 'docs', 'protocol.md'), 'utf8'));
    assert.ok(doc.size >= 9);
    for (const m of doc) assert.ok(ours.has(m), `${m} is in docs/protocol.md but not in protocol.ts`);
  });
  it('matches crashguard/sidecar/protocol.py\'s methods exactly', () => {
    const file = path.join(ROOT, 'python_backend', 'crashguard', 'sidecar', 'protocol.py');
    assert.deepEqual([...ours].sort(), [...namesIn(fs.readFileSync(file, 'utf8'))].sort());
  });
  it('speaks the sidecar\'s protocol version', () => {
    assert.equal(P.PROTOCOL_VERSION, py.protocolVersion);
  });
  it('checks every field of every payload the way Python sends it', () => {
    const ts = checkers();
    const problems: string[] = [];
    let compared = 0;
    for (const [name, description] of ts) {
      const fields = py.payloads[name];
      if (!fields) {
        // Only payloads that are themselves optional (GpuProcessInfo, ResumeCommand) may be missing in Python.
        if (!['GpuProcessInfo', 'ResumeCommand'].includes(name)) problems.push(`${name}: no Python dataclass of that name`);
        continue;
      }
      compared += Object.keys(fields).length;
      problems.push(...differences(name, fields, description));
    }
    assert.deepEqual(problems, []);
    assert.ok(compared > 100, `compared ${compared} fields`);
    for (const wanted of ['Sample', 'RunInfo', 'CleanupResult', 'RunCleanup', 'CleanupReport', 'StopResult', 'HistoryResult',
      'WarningParams', 'RunEventParams', 'ActionParams', 'Announcement']) {
      assert.ok(ts.has(wanted), `protocol.ts checks ${wanted}`);
    }
  });
  it('bounds strings as the monitor cuts them (C2): at the limit a run is kept, one character over it is dropped', () => {
    assert.deepEqual({ ...P.TEXT_LIMITS }, py.textLimits.keys);
    assert.equal(P.MAX_TEXT, py.textLimits.other);
    const base = JSON.parse(JSON.stringify(run())) as Record<string, unknown>;
    const limits: [string, number][] = [['name', P.TEXT_LIMITS.name], ['lastEvent', P.TEXT_LIMITS.lastEvent],
      ['exitCause', P.TEXT_LIMITS.exitCause], ['dir', P.MAX_TEXT], ['config', P.MAX_TEXT], ['checkpoint', P.MAX_TEXT]];
    for (const [key, limit] of limits) {
      // Counted in characters, as Python's len(): one beyond the BMP is one character, two UTF-16 units.
      for (const unit of ['x', '\u{1F600}']) {
        const sample = (n: number): unknown => ({ runs: [{ ...base, [key]: unit.repeat(n) }], runsOmitted: 0 });
        assert.equal(P.RunsResult(sample(limit)).runs.length, 1, `${key} of ${limit} ${unit === 'x' ? 'ASCII' : 'astral'} characters`);
        const drops: PayloadError[] = [];
        assert.equal(P.RunsResult(sample(limit + 1), '$', drops).runs.length, 0, `${key} of ${limit + 1} characters`);
        assert.equal(drops.length, 1);
      }
    }
    const holder = (command: string): unknown => ({ runs: [{ ...base, lockHolder: { pid: 7, command } }] });
    assert.equal(P.RunsResult(holder('c'.repeat(P.TEXT_LIMITS.command))).runs.length, 1);
    assert.equal(P.RunsResult(holder('c'.repeat(P.TEXT_LIMITS.command + 1)), '$', []).runs.length, 0);
  });
  it('shows a ladder action as a toast unless the monitor says another window shows it', () => {
    const stop = { run: 'b-run', ok: true, state: 'stopped', checkpoint: null, message: 'stopped', signalled: false };
    const action = { action: 'checkpointAndStop', reason: 'RAM critical (93% >= 90%)', result: stop };
    assert.equal(P.ActionParams(action).notify, true); // a per-window monitor sends no `notify`: its one window shows it
    assert.equal(P.ActionParams({ ...action, notify: false }).notify, false);
    assert.throws(() => P.ActionParams({ ...action, notify: 'no' }));
  });
  it('sends only settings the sidecar knows', () => {
    for (const key of [...SIDECAR_KEYS, 'runsDirectories']) assert.ok(py.settings.includes(key), key);
  });
});
