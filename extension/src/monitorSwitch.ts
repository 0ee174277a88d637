// "Stop Memory Monitor" is remembered: a window reloaded (or the workspace opened again) leaves the monitor off
// until "Start Memory Monitor". Kept in the workspace's state, not the global one: the monitor is one per machine
// and a window stopping it only leaves it (other windows keep theirs), so the choice belongs to this workspace.
// Pure: no 'vscode' import (the memento and the monitor are passed in).

export const MONITOR_OFF_KEY = 'crashGuard.monitorOff';

export interface Memento {
  get<T>(key: string, defaultValue: T): T;
  update(key: string, value: unknown): PromiseLike<void>;
}

export interface Monitor {
  restart(replace?: boolean): Promise<void>;
  stop(): Promise<void>;
}

export class MonitorSwitch {
  constructor(private readonly state: Memento, private readonly monitor: Monitor) {}

  get off(): boolean {
    return this.state.get<boolean>(MONITOR_OFF_KEY, false);
  }

  /** Stop Memory Monitor: stop it and remember. */
  async turnOff(): Promise<void> {
    await this.state.update(MONITOR_OFF_KEY, true);
    await this.monitor.stop();
  }

  /** Start Memory Monitor: forget "off" and connect (starting a monitor if none runs). */
  async turnOn(): Promise<void> {
    await this.state.update(MONITOR_OFF_KEY, false);
    await this.monitor.restart();
  }

  /** Restart Memory Monitor: forget "off"; the running monitor makes way for a new one (every window reconnects). */
  async replace(): Promise<void> {
    await this.state.update(MONITOR_OFF_KEY, false);
    await this.monitor.restart(true);
  }

  /** Activation, trust granted, a new interpreter: start it unless the user turned it off (then show "off");
   *  `replace`: a running monitor makes way for one on the interpreter chosen now (crashGuard.pythonPath changed). */
  startIfWanted(replace = false): Promise<void> {
    return this.off ? this.monitor.stop() : this.monitor.restart(replace);
  }
}
