import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PayloadError } from '../../../extension/src/check';
import * as P from '../../../extension/src/protocol';
import { run, sample } from './fixtures';

describe('payload checks', () => {
  it('passes a well-formed sample and drops keys it does not know', () => {
    const s = sample();
    assert.deepEqual(P.Sample({ ...s, somethingNew: 1 }), s);
  });
  it('names the first bad field', () => {
    const bad = { ...sample(), ram: { ...sample().ram, percent: '62' } };
    assert.throws(() => P.Sample(bad), (e: unknown) => e instanceof PayloadError && e.path === '$.ram.percent' &&
      /expected a finite number, got "62"/.test(e.message));
    assert.throws(() => P.Sample({ ...sample(), runs: [{ ...run(), state: 'exploded' }] }), /\$\.runs\[0\]\.state: expected one of/);
    assert.throws(() => P.Sample(null), /expected an object \(Sample\)/);
    const withoutSeq: Record<string, unknown> = { ...sample() };
    delete withoutSeq.seq;
    assert.throws(() => P.Sample(withoutSeq), /\$\.seq: expected an integer, got nothing/);
  });
  it('reads fields an older sidecar does not send as their fallback', () => {
    const old = Object.fromEntries(Object.entries(run()).filter(([k]) => !['stalledSeconds', 'resumeCommand', 'stepSeconds'].includes(k)));
    const checked = P.RunInfo(old);
    assert.equal(checked.stalledSeconds, null);
    assert.equal(checked.resumeCommand, null);
  });
  it('keeps "not sent" apart from "none" where that matters (GPU processes)', () => {
    const gpu = { index: 0, name: 'H200', total: 1, used: 0, percent: 0, utilization: 0, level: 'normal' };
    assert.equal(P.GpuInfo(gpu).processes, undefined);
    assert.deepEqual(P.GpuInfo({ ...gpu, processes: [] }).processes, []);
  });
  it('tells a cleanup result from a stop result', () => {
    const stop = { run: 'x', ok: true, state: 'stopped', checkpoint: null, message: 'ok', signalled: false };
    const a = P.ActionParams({ action: 'terminate', reason: 'RAM critical', result: stop });
    assert.ok(!P.isCleanupResult(a.result));
    assert.throws(() => P.ActionParams({ action: 'explode', reason: '', result: stop }), /\$\.action/);
  });
  it('accepts a hung run with its stall', () => {
    assert.equal(P.RunInfo(run({ state: 'hung', stalledSeconds: 300 })).state, 'hung');
  });
});
