import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backgroundColorId, foregroundColorId, levelFor, WarningTracker, worst } from '../../../extension/src/levels';

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
