import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crashKey, MAX_CRASH_AGE_SECONDS, resumePlan, shouldAsk } from '../../../extension/src/crashes';
import { run } from './fixtures';

const now = 1764400000 + 60;
const crashed = run({ state: 'crashed', alive: false, dir: '/ws2/runs/brats', config: '/ws2/config/safe_training.json' });
const empty = { answered: [], neverAsk: [] };

describe('crash prompts', () => {
  it('asks about a recent crash until it is answered', () => {
    assert.equal(shouldAsk(crashed, empty, now), true);
    assert.equal(shouldAsk(crashed, { answered: [crashKey(crashed)], neverAsk: [] }, now), false);
    // The same run crashing again later (another pid or step) is a new crash.
    assert.equal(shouldAsk({ ...crashed, pid: 999 }, { answered: [crashKey(crashed)], neverAsk: [] }, now), true);
  });
  it('never asks about runs the user excluded, live runs, or crashes older than the age cap', () => {
    assert.equal(shouldAsk(crashed, { answered: [], neverAsk: [crashed.dir] }, now), false);
    assert.equal(shouldAsk({ ...crashed, state: 'running', alive: true }, empty, now), false);
    assert.equal(shouldAsk({ ...crashed, state: 'stopped' }, empty, now), false);
    assert.equal(shouldAsk(crashed, empty, (crashed.updated ?? 0) + MAX_CRASH_AGE_SECONDS + 1), false);
    assert.equal(shouldAsk({ ...crashed, updated: null, started: null }, empty, now), false);
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
});
