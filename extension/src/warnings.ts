// Notifications: threshold crossings (one toast per sample, whatever the number of GPUs, with a per-resource
// cooldown and "Don't Warn Again for This Run"), the escalation ladder's automatic actions, and hung runs.
// Popups are fire-and-forget: nothing here blocks the sidecar's message handling.
import * as vscode from 'vscode';
import { messageText } from './escape';
import { cleanupSummary, coalescedWarning, hungMessage, stopSummary } from './format';
import { rank, WarningPolicy } from './levels';
import type { Log } from './logger';
import { isCleanupResult, type ActionParams, type RunEventParams, type RunInfo, type WarningParams } from './protocol';

export const ACTION_CLEANUP = 'Emergency Cleanup';
export const ACTION_REPORT = 'Show Report';
export const ACTION_STOP = 'Stop Training (checkpoint)';
export const ACTION_SILENCE = 'Don\'t Warn Again for This Run';
export const ACTION_LOGS = 'Show Logs';

const SILENCED_KEY = 'crashGuard.silencedRuns';
const MAX_SILENCED = 100;
/** A sample's level changes arrive back to back after it; gather them this long into one toast. */
const COALESCE_MS = 250;

export interface WarningDeps {
  log: Log;
  state: vscode.Memento;
  showNotifications(): boolean;
  cooldownMinutes(): number;
  /** Live guarded runs of the latest sample, used to name runs and to tell this run from a later namesake. */
  liveRuns(): RunInfo[];
}

/** A run's identity for "don't warn again": its folder and its process (a later run of the same name is new). */
function runKey(run: Pick<RunInfo, 'dir' | 'pid'>): string {
  return `${run.dir}#${run.pid ?? ''}`;
}

export class Warnings {
  private readonly policy: WarningPolicy;
  private pending: WarningParams[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly hungShown = new Set<string>();

  constructor(private readonly deps: WarningDeps) {
    this.policy = new WarningPolicy(() => deps.cooldownMinutes() * 60_000);
  }

  onWarning(w: WarningParams): void {
    this.deps.log.info(`level change: ${w.resource} ${w.previous} → ${w.level} (${w.percent.toFixed(1)}%)`);
    this.pending.push(w);
    this.timer ??= setTimeout(() => this.flush(), COALESCE_MS);
  }

  private silenced(name: string): boolean {
    const keys = this.deps.state.get<string[]>(SILENCED_KEY, []);
    const live = this.deps.liveRuns().filter((r) => r.name === name);
    return live.length > 0 && live.every((r) => keys.includes(runKey(r)));
  }

  private flush(): void {
    this.timer = undefined;
    const batch = this.pending;
    this.pending = [];
    const shown = this.policy.decide(batch, (name) => this.silenced(name));
    if (shown.length === 0 || !this.deps.showNotifications()) return;
    const names = [...new Set(shown.flatMap((w) => w.runs))];
    const runs = this.deps.liveRuns().filter((r) => names.length === 0 || names.includes(r.name));
    const critical = shown.some((w) => w.level === 'critical');
    const actions = [ACTION_CLEANUP, ACTION_REPORT];
    if (runs.length > 0) actions.push(ACTION_STOP);
    if (runs.length > 0 && !critical) actions.push(ACTION_SILENCE);
    const worstFirst = [...shown].sort((a, b) => rank(b.level) - rank(a.level));
    const text = coalescedWarning(worstFirst.map((w) => w.message));
    const toast = critical ? vscode.window.showErrorMessage(text, ...actions) : vscode.window.showWarningMessage(text, ...actions);
    void toast.then((choice) => {
      if (choice === ACTION_CLEANUP) void vscode.commands.executeCommand('crashGuard.emergencyCleanup');
      else if (choice === ACTION_REPORT) void vscode.commands.executeCommand('crashGuard.showReport');
      else if (choice === ACTION_STOP) void vscode.commands.executeCommand('crashGuard.stopTraining', runs[0]);
      else if (choice === ACTION_SILENCE) void this.silence(runs);
    });
  }

  private async silence(runs: readonly RunInfo[]): Promise<void> {
    const keys = this.deps.state.get<string[]>(SILENCED_KEY, []);
    await this.deps.state.update(SILENCED_KEY, [...keys, ...runs.map(runKey)].slice(-MAX_SILENCED));
    this.deps.log.info(`no more warnings for ${runs.map((r) => r.name).join(', ')} (critical levels still notify)`);
  }

  /** Run events the warnings care about: a hung run (Stop / Show Logs); its recovery clears the state. */
  onRunEvent(e: RunEventParams): void {
    const key = runKey(e.run);
    if (e.event === 'recovered') {
      this.hungShown.delete(key);
      return;
    }
    if (e.event !== 'hung' || this.hungShown.has(key)) return;
    this.hungShown.add(key);
    this.deps.log.warn(hungMessage(e.run));
    if (!this.deps.showNotifications()) return;
    void vscode.window.showWarningMessage(`Crash Guard: ${hungMessage(e.run)}`, ACTION_STOP, ACTION_LOGS).then((choice) => {
      if (choice === ACTION_STOP) void vscode.commands.executeCommand('crashGuard.stopTraining', e.run);
      else if (choice === ACTION_LOGS) void vscode.commands.executeCommand('crashGuard.showLogs');
    });
  }

  /** The escalation ladder acted on its own (autoCleanup / criticalAction): say what it did. */
  onAction(a: ActionParams): void {
    const detail = isCleanupResult(a.result) ? cleanupSummary(a.result) : stopSummary(a.result);
    this.deps.log.warn(`automatic ${a.action} (${a.reason}): ${detail}`);
    if (!this.deps.showNotifications()) return;
    const what = a.action === 'cleanup' ? 'ran an automatic cleanup'
      : a.action === 'terminate' ? 'sent SIGTERM to a run that did not stop in time'
        : 'checkpointed and stopped a run';
    const text = messageText(`Crash Guard ${what} (${a.reason}). ${detail}`);
    const toast = a.action === 'terminate' ? vscode.window.showWarningMessage(text, ACTION_REPORT)
      : vscode.window.showInformationMessage(text, ACTION_REPORT);
    void toast.then((choice) => {
      if (choice === ACTION_REPORT) void vscode.commands.executeCommand('crashGuard.showReport');
    });
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
