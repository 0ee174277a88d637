// "Stop Memory Monitor" survives a window reload (monitorSwitch.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MONITOR_OFF_KEY, MonitorSwitch, type Memento } from '../../../extension/src/monitorSwitch';

/** A workspace state that outlives the window, as VS Code's does. */
class Store implements Memento {
  readonly values = new Map<string, unknown>();
  get<T>(key: string, defaultValue: T): T {
    return this.values.has(key) ? this.values.get(key) as T : defaultValue;
  }
  update(key: string, value: unknown): Promise<void> {
    this.values.set(key, value);
    return Promise.resolve();
  }
}

function monitor(calls: string[]) {
  return {
    restart: (replace?: boolean) => Promise.resolve(void calls.push(replace ? 'replace' : 'restart')),
    stop: () => Promise.resolve(void calls.push('stop')),
  };
}

describe('the memory monitor on / off', () => {
  it('starts on activation unless the user turned it off, and a reload remembers "off"', async () => {
    const store = new Store();
    const calls: string[] = [];
    await new MonitorSwitch(store, monitor(calls)).startIfWanted();
    assert.deepEqual(calls, ['restart']);
    await new MonitorSwitch(store, monitor(calls)).turnOff();
    assert.equal(store.values.get(MONITOR_OFF_KEY), true);
    // The window reloads: a new extension host, the same workspace state.
    const reloaded: string[] = [];
    const again = new MonitorSwitch(store, monitor(reloaded));
    assert.equal(again.off, true);
    await again.startIfWanted();
    assert.deepEqual(reloaded, ['stop'], 'stays off (and shows "monitor off")');
    await again.turnOn();
    assert.deepEqual(reloaded, ['stop', 'restart']);
    assert.equal(new MonitorSwitch(store, monitor([])).off, false);
  });

  it('Restart Memory Monitor asks for a new monitor and forgets "off"; Start only connects', async () => {
    const store = new Store();
    const calls: string[] = [];
    const monitorSwitch = new MonitorSwitch(store, monitor(calls));
    await monitorSwitch.turnOff();
    await monitorSwitch.replace();
    assert.equal(monitorSwitch.off, false);
    await monitorSwitch.turnOn();
    assert.deepEqual(calls, ['stop', 'replace', 'restart']);
  });
});
