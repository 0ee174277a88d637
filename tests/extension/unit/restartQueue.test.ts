import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CrashBudget, RestartQueue } from '../../../extension/src/restartQueue';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('RestartQueue', () => {
  it('runs one restart at a time and collapses requests made meanwhile into one more', async () => {
    const gates: { promise: Promise<void>; resolve: () => void }[] = [];
    let running = 0;
    let maxRunning = 0;
    const queue = new RestartQueue(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      const gate = deferred();
      gates.push(gate);
      await gate.promise;
      running--;
    });
    const first = queue.request();
    assert.equal(queue.busy, true);
    const more = [queue.request(), queue.request(), queue.request()];
    await Promise.resolve();
    assert.equal(gates.length, 1);
    gates[0]!.resolve();
    await new Promise((r) => setImmediate(r));
    assert.equal(gates.length, 2, 'exactly one queued restart follows');
    gates[1]!.resolve();
    await Promise.all([first, ...more]);
    assert.equal(gates.length, 2);
    assert.equal(maxRunning, 1);
    assert.equal(queue.busy, false);
  });
  it('a request after completion starts a new restart', async () => {
    let runs = 0;
    const queue = new RestartQueue(async () => { runs++; });
    await queue.request();
    await queue.request();
    assert.equal(runs, 2);
  });
  it('reports a failed restart and keeps working', async () => {
    const errors: unknown[] = [];
    let runs = 0;
    const queue = new RestartQueue(async () => {
      runs++;
      if (runs === 1) throw new Error('boom');
    }, (e) => errors.push(e));
    await queue.request(); // never rejects
    assert.equal(errors.length, 1);
    await queue.request();
    assert.equal(runs, 2);
    assert.equal(errors.length, 1);
  });
});

describe('CrashBudget', () => {
  it('backs off and gives up after the limit within the window', () => {
    const b = new CrashBudget(3, 60_000, 100);
    assert.equal(b.nextDelay(0), 100);
    assert.equal(b.nextDelay(1000), 200);
    assert.equal(b.nextDelay(2000), 400);
    assert.equal(b.nextDelay(3000), undefined);
  });
  it('forgets exits older than the window', () => {
    const b = new CrashBudget(2, 10_000, 100);
    b.nextDelay(0);
    b.nextDelay(1);
    assert.equal(b.nextDelay(20_000), 100);
    b.reset();
    assert.equal(b.nextDelay(20_001), 100);
  });
});
