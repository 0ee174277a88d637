import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backgroundColorId, foregroundColorId, levelFor, WarningPolicy, WarningTracker, worst } from '../../../extension/src/levels';
import type { Level, WarningParams } from '../../../extension/src/protocol';

describe('threshold → colour', () => {
  it('maps levels to the status bar theme colours', () => {
    assert.equal(backgroundColorId('normal'), undefined);
    assert.equal(backgroundColorId('warning'), 'statusBarItem.warningBackground');
    assert.equal(backgroundColorId('critical'), 'statusBarItem.errorBackground');
    assert.equal(foregroundColorId('warning'), 'statusBarItem.warningForeground');
    assert.equal(foregroundColorId('normal'), undefined);
  });
  it('classifies a percentage at the thresholds (inclusive)', () => {
    assert.equal(levelFor(79.9, 80, 90), 'normal');
    assert.equal(levelFor(80, 80, 90), 'warning');
    assert.equal(levelFor(90, 80, 90), 'critical');
    assert.equal(levelFor(5, 1, 1), 'critical');
  });
  it('takes the worst level', () => {
    assert.equal(worst([]), 'normal');
    assert.equal(worst(['normal', 'critical', 'warning']), 'critical');
  });
});

describe('WarningTracker', () => {
  it('notifies once per level entered, not while it stays', () => {
    const t = new WarningTracker();
    assert.equal(t.update('RAM', 'normal'), false);
    assert.equal(t.update('RAM', 'warning'), true);
    assert.equal(t.update('RAM', 'warning'), false);
    assert.equal(t.update('RAM', 'critical'), true);
    assert.equal(t.update('RAM', 'critical'), false);
    // falling back to warning is not news; rising again to critical is
    assert.equal(t.update('RAM', 'warning'), false);
    assert.equal(t.update('RAM', 'critical'), true);
  });
  it('re-arms after a return to normal, per resource', () => {
    const t = new WarningTracker();
    assert.equal(t.update('RAM', 'warning'), true);
    assert.equal(t.update('GPU 0', 'warning'), true);
    assert.equal(t.update('RAM', 'normal'), false);
    assert.equal(t.current('RAM'), 'normal');
    assert.equal(t.current('GPU 0'), 'warning');
    assert.equal(t.update('RAM', 'warning'), true);
    t.reset();
    assert.equal(t.update('GPU 0', 'warning'), true);
  });
});

function warning(resource: string, level: Level, runs: string[] = []): WarningParams {
  return { resource, level, previous: 'normal', percent: 90, thresholdPercent: 80, message: `${resource} ${level}`, runs,
    time: 1 };
}

describe('WarningPolicy', () => {
  const never = () => false;
  it('passes every resource of one sample that entered a level, for one toast', () => {
    const p = new WarningPolicy(() => 600_000, () => 0);
    const shown = p.decide([warning('GPU 0', 'warning'), warning('GPU 1', 'warning'), warning('GPU 2', 'normal')], never);
    assert.deepEqual(shown.map((w) => w.resource), ['GPU 0', 'GPU 1']);
  });
  it('does not repeat a resource at the same level within the cooldown, even after a return to normal', () => {
    let now = 0;
    const p = new WarningPolicy(() => 600_000, () => now);
    assert.equal(p.decide([warning('RAM', 'warning')], never).length, 1);
    assert.equal(p.decide([warning('RAM', 'normal')], never).length, 0);
    now = 60_000;
    assert.equal(p.decide([warning('RAM', 'warning')], never).length, 0, 'flapping within 10 min: no second toast');
    assert.equal(p.decide([warning('RAM', 'critical')], never).length, 1, 'a higher level is news');
    assert.equal(p.decide([warning('RAM', 'normal')], never).length, 0);
    now = 700_000;
    assert.equal(p.decide([warning('RAM', 'warning')], never).length, 1, 'after the cooldown it warns again');
  });
  it('keeps quiet about warnings (not critical) of runs the user silenced', () => {
    const p = new WarningPolicy(() => 0, () => 0);
    const silenced = (run: string) => run === 'brats';
    assert.equal(p.decide([warning('RAM', 'warning', ['brats'])], silenced).length, 0);
    assert.equal(p.decide([warning('RAM', 'critical', ['brats'])], silenced).length, 1);
    assert.equal(p.decide([warning('GPU 0', 'warning', ['brats', 'other'])], silenced).length, 1);
  });
});
