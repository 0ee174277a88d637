// What a threshold toast offers and which run its actions act on (alerts.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ACTION_CLEANUP, ACTION_SILENCE, ACTION_SILENCE_WHICH, ACTION_STOP, ACTION_STOP_WHICH, heaviest, liveRuns,
  MAX_TOAST_ACTIONS, toastPlan, type LiveRun,
} from '../../../extension/src/alerts';
import type { Level, WarningParams } from '../../../extension/src/protocol';
import { run } from './fixtures';

const GiB = 2 ** 30;
const warning = (level: Level = 'warning', resource = 'RAM', runs = ['small', 'big']): WarningParams => ({
  resource, level, previous: 'normal', percent: 83, thresholdPercent: 80,
  message: `${resource} at 83% (${level} at 80%)`, runs, time: 1,
});
const small = run({ name: 'small', dir: '/ws/runs/small', pid: 10, treeRss: 1 * GiB, vram: 20 * GiB });
const big = run({ name: 'big', dir: '/ws/runs/big', pid: 20, treeRss: 9 * GiB, vram: 2 * GiB });
const nothingSilenced = (): boolean => false;
const names = (t: ReturnType<typeof heaviest>): string[] =>
  t.kind === 'one' ? [t.run.name] : t.kind === 'ask' ? t.runs.map((r) => r.name) : [];

describe('the live runs a toast can act on', () => {
  it('are one per run folder: the ranks of a torchrun job together, their memory summed; dead ones left out', () => {
    const ranks = [0, 1, 2].map((rank) => run({ name: 'ddp', dir: '/ws/runs/ddp', rank, worldSize: 3, pid: 100 + rank,
      treeRss: 2 * GiB, vram: GiB }));
    const dead = run({ name: 'old', dir: '/ws/runs/old', alive: false, state: 'crashed' });
    const live = liveRuns([ranks[2]!, ranks[0]!, ranks[1]!, dead]);
    assert.equal(live.length, 1);
    assert.equal(live[0]!.main.rank, 0);
    assert.equal(live[0]!.key, '/ws/runs/ddp#100');
    assert.equal(live[0]!.ram, 6 * GiB);
    assert.equal(live[0]!.vram, 3 * GiB);
  });
});

describe('Stop Run', () => {
  it('acts on the heaviest run, not the first one listed (issue 22)', () => {
    const plan = toastPlan([warning()], liveRuns([small, big]), nothingSilenced);
    assert.deepEqual(names(plan.stop), ['big']);
    assert.equal(plan.actions[1], ACTION_STOP);
    assert.match(plan.text, /Heaviest run: big \(9\.00 GiB\)/);
  });
  it('weighs the memory of the resource the toast is about: VRAM for a GPU', () => {
    const plan = toastPlan([warning('warning', 'GPU 0')], liveRuns([small, big]), nothingSilenced);
    assert.deepEqual(names(plan.stop), ['small']);
  });
  it('asks which when another run is close to the heaviest, offering only the close ones, heaviest first', () => {
    const close = run({ name: 'close', dir: '/ws/runs/close', pid: 30, treeRss: 8 * GiB });
    const plan = toastPlan([warning('warning', 'RAM', ['small', 'big', 'close'])], liveRuns([small, close, big]), nothingSilenced);
    assert.deepEqual(names(plan.stop), ['big', 'close']);
    assert.equal(plan.actions[1], ACTION_STOP_WHICH);
    assert.match(plan.text, /Runs using about the same: big \(9\.00 GiB\), close \(8\.00 GiB\)/);
  });
  it('asks when nothing says which run is heavier (no memory figure yet)', () => {
    const a = run({ name: 'a', dir: '/a', pid: 1, treeRss: null });
    const b = run({ name: 'b', dir: '/b', pid: 2, treeRss: null });
    assert.deepEqual(names(heaviest(liveRuns([a, b]), 'RAM')), ['a', 'b']);
  });
  it('is not offered without a live run', () => {
    const plan = toastPlan([warning('warning', 'RAM', [])], [], nothingSilenced);
    assert.deepEqual(plan.actions, [ACTION_CLEANUP]);
    assert.equal(plan.stop.kind, 'none');
  });
});

describe('Don\'t Warn Again', () => {
  it('silences the one run the toast names, not every run (issue 22)', () => {
    const plan = toastPlan([warning()], liveRuns([small, big]), nothingSilenced);
    assert.equal(plan.actions[2], ACTION_SILENCE);
    assert.equal(plan.silence.kind, 'one');
    assert.equal((plan.silence as { run: LiveRun }).run.key, '/ws/runs/big#20');
  });
  it('asks which when runs are close', () => {
    const close = run({ name: 'close', dir: '/ws/runs/close', pid: 30, treeRss: 8.5 * GiB });
    const plan = toastPlan([warning('warning', 'RAM', ['big', 'close'])], liveRuns([close, big]), nothingSilenced);
    assert.equal(plan.actions[2], ACTION_SILENCE_WHICH);
    assert.deepEqual(names(plan.silence), ['big', 'close']);
  });
  it('at a warning, a silenced run is left out: the toast is about the others', () => {
    const silenced = (r: LiveRun): boolean => r.name === 'big';
    const plan = toastPlan([warning()], liveRuns([small, big]), silenced);
    assert.deepEqual(names(plan.stop), ['small']);
    assert.deepEqual(names(plan.silence), ['small']);
  });
  it('is never offered at critical, where every run counts for Stop', () => {
    const silenced = (r: LiveRun): boolean => r.name === 'big';
    const plan = toastPlan([warning('warning'), warning('critical')], liveRuns([small, big]), silenced);
    assert.equal(plan.severity, 'error');
    assert.deepEqual(plan.actions, [ACTION_CLEANUP, ACTION_STOP]);
    assert.deepEqual(names(plan.stop), ['big']);
    assert.equal(plan.silence.kind, 'none');
  });
});

describe('the toast', () => {
  it('never carries more than three short actions, whatever the case', () => {
    const close = run({ name: 'close', dir: '/ws/runs/close', pid: 30, treeRss: 9 * GiB });
    for (const level of ['warning', 'critical'] as const) {
      for (const runs of [[], [small], [small, big], [small, big, close]]) {
        const plan = toastPlan([warning(level, 'RAM', runs.map((r) => r.name))], liveRuns(runs), nothingSilenced);
        assert.ok(plan.actions.length <= MAX_TOAST_ACTIONS, `${level}, ${runs.length} runs: ${plan.actions.join(', ')}`);
        for (const a of plan.actions) assert.ok(a.length <= 18, `"${a}" is short`);
        assert.equal(plan.actions[0], ACTION_CLEANUP);
      }
    }
  });
  it('gathers a sample\'s level changes, worst first, and links the memory report', () => {
    const plan = toastPlan([warning('warning', 'RAM', []), warning('critical', 'GPU 1', [])], [], nothingSilenced);
    assert.match(plan.text, /^Crash Guard: GPU 1 at 83% \(critical at 80%\); RAM at 83% \(warning at 80%\)\. /);
    assert.match(plan.text, /\[Memory report\]\(command:crashGuard\.showReport\)$/);
  });
  it('keeps a run\'s name from becoming a link (a runs folder is hostile input)', () => {
    const evil = run({ name: 'x](command:crashGuard.stopMonitor)', dir: '/ws/runs/evil', pid: 5, treeRss: GiB });
    const plan = toastPlan([warning('warning', 'RAM', [evil.name])], liveRuns([evil]), nothingSilenced);
    assert.equal((plan.text.match(/\]\(command:/g) ?? []).length, 1, plan.text);
    const hidden = run({ name: 'a\u202Eb', dir: '/ws/runs/hidden', pid: 6, treeRss: GiB });
    const shown = toastPlan([warning('warning', 'RAM', [hidden.name])], liveRuns([hidden]), nothingSilenced);
    assert.match(shown.text, /Heaviest run: a<U\+202E>b /, shown.text); // escape.ts: what it is, not how it reads
  });
});
