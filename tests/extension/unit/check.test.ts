import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ContainedError, PayloadError, type Drops } from '../../../extension/src/check';
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
    assert.throws(() => P.Sample({ ...sample(), runs: 'many' }), /\$\.runs: expected a list/);
    assert.throws(() => P.Sample(null), /expected an object \(Sample\)/);
    const withoutSeq: Record<string, unknown> = { ...sample() };
    delete withoutSeq.seq;
    assert.throws(() => P.Sample(withoutSeq), /\$\.seq: expected an integer within .*, got nothing/);
  });
  it('drops a run with a bad field and keeps the sample and the other runs (C2; issue 21, class 2)', () => {
    // A 300-digit integer in `step` parses to 1e300 (not exact) and Infinity to null in JSON.parse-land; either way
    // that run is bad, never the sidecar.
    const good = run({ name: 'good', dir: '/ws/runs/good' });
    const raw = JSON.parse(`{"runs": [${JSON.stringify({ ...run(), step: 0 }).replace('"step":0', `"step":${'9'.repeat(300)}`)}, ` +
      `${JSON.stringify(good)}, ${JSON.stringify({ ...run(), name: 'x'.repeat(256) })}, ${JSON.stringify({ ...run(), state: 'exploded' })}]}`) as { runs: unknown[] };
    const drops: Drops = [];
    const checked = P.Sample({ ...sample(), runs: raw.runs, runsOmitted: 3 }, '$', drops);
    assert.deepEqual(checked.runs.map((r) => r.name), ['good']);
    assert.equal(checked.runsOmitted, 3);
    assert.deepEqual(drops.map((d) => d.path), ['$.runs[0].step', '$.runs[2].name', '$.runs[3].state']);
    // 400 digits parse to Infinity: the same (today's main refused the whole sample: an "incompatible sidecar").
    const infinite = JSON.parse(JSON.stringify({ ...run(), step: 0 }).replace('"step":0', `"step":${'9'.repeat(400)}`)) as unknown;
    const infiniteDrops: Drops = [];
    assert.deepEqual(P.Sample({ ...sample(), runs: [infinite, good] }, '$', infiniteDrops).runs.map((r) => r.name), ['good']);
    assert.match(infiniteDrops[0]?.message ?? '', /got number Infinity/);
    assert.match(drops[0]?.message ?? '', /expected an integer within ±\(2\^53 - 1\), got number 1e\+300/);
    // The same in the answer to crashGuard/runs.
    assert.deepEqual(P.RunsResult({ runs: raw.runs }, '$', []).runs.map((r) => r.name), ['good']);
    // A run event about a bad run is that run's fault: a ContainedError, which the sidecar client drops and logs.
    assert.throws(() => P.RunEventParams({ event: 'crashed', run: raw.runs[0], message: 'x' }),
      (e: unknown) => e instanceof ContainedError && e.path === '$.run.step');
    // A bad field outside any run is still the sidecar's: a plain PayloadError (an incompatible sidecar).
    assert.throws(() => P.RunEventParams({ event: 'exploded', run: good, message: 'x' }),
      (e: unknown) => e instanceof PayloadError && !(e instanceof ContainedError));
  });
  it('takes only integers JavaScript holds exactly', () => {
    assert.equal(P.ProcessInfo({ pid: 2 ** 53 - 1, name: 'p', rss: 1 }).pid, 2 ** 53 - 1);
    assert.throws(() => P.ProcessInfo({ pid: 2 ** 53, name: 'p', rss: 1 }), /\$\.pid: expected an integer within/);
  });
  it('reads crashProof and runsOmitted, absent from an older sidecar, as "no proof" and 0', () => {
    const old: Record<string, unknown> = { ...run() };
    delete old.crashProof;
    assert.equal(P.RunInfo(old).crashProof, null);
    assert.equal(P.RunInfo({ ...run(), crashProof: 'witnessed' }).crashProof, 'witnessed');
    assert.throws(() => P.RunInfo({ ...run(), crashProof: 'trust me' }), /crashProof: expected one of witnessed, supervisor/);
    const older: Record<string, unknown> = { ...sample() };
    delete older.runsOmitted;
    assert.equal(P.Sample(older).runsOmitted, 0);
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
