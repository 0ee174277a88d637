// Notifications: threshold crossings (one toast per sample, whatever the number of GPUs, with a per-resource
// cooldown; its text and at most three actions come from alerts.ts), the escalation ladder's automatic actions, and
// hung runs.
// Popups are fire-and-forget: nothing here blocks the sidecar's message handling.
import * as vscode from 'vscode';
import {
  ACTION_CLEANUP, ACTION_SILENCE, ACTION_SILENCE_WHICH, ACTION_STOP, ACTION_STOP_WHICH, liveRuns, runKey, toastPlan,
  type Target,
} from './alerts';
import { messageText } from './escape';
import { cleanupSummary, hungMessage, stopSummary } from './format';
import { WarningPolicy } from './levels';
import type { Log } from './logger';
import { isCleanupResult, type ActionParams, type RunEventParams, type RunInfo, type WarningParams } from './protocol';
import { pickRun } from './runPick';

export const ACTION_REPORT = 'Show Report';
/** The hung-run toast's actions (two: no need to cut them). */
export const ACTION_STOP_HUNG = 'Stop Training (checkpoint)';
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
  /** Guarded runs of the latest sample (live or not), used to name runs and to tell this run from a later namesake. */
  runs(): RunInfo[];
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

  private silencedKeys(): string[] {
    return this.deps.state.get<string[]>(SILENCED_KEY, []);
  }

  /** A name is silenced while every live run of that name is (a new run of the same name warns again). */
  private silencedName(name: string): boolean {
    const keys = this.silencedKeys();
    const live = liveRuns(this.deps.runs()).filter((r) => r.name === name);
    return live.length > 0 && live.every((r) => keys.includes(r.key));
  }

  private flush(): void {
    this.timer = undefined;
    const batch = this.pending;
    this.pending = [];
    const shown = this.policy.decide(batch, (name) => this.silencedName(name));
    if (shown.length === 0 || !this.deps.showNotifications()) return;
    const keys = this.silencedKeys();
    const plan = toastPlan(shown, liveRuns(this.deps.runs()), (r) => keys.includes(r.key));
    const toast = plan.severity === 'error' ? vscode.window.showErrorMessage(plan.text, ...plan.actions)
      : vscode.window.showWarningMessage(plan.text, ...plan.actions);
    void toast.then((choice) => {
      if (choice === ACTION_CLEANUP) void vscode.commands.executeCommand('crashGuard.emergencyCleanup');
      else if (choice === ACTION_STOP || choice === ACTION_STOP_WHICH) this.stop(plan.stop);
      else if (choice === ACTION_SILENCE || choice === ACTION_SILENCE_WHICH) void this.silence(plan.silence);
    });
  }

  private stop(target: Target): void {
    // One run: that one; several close: the stop command's quick pick offers just those, heaviest first.
    const given = target.kind === 'one' ? target.run.main : target.kind === 'ask' ? target.runs.map((r) => r.main) : undefined;
    void vscode.commands.executeCommand('crashGuard.stopTraining', given);
  }

  private async silence(target: Target): Promise<void> {
    const run = target.kind === 'one' ? target.run
      : target.kind === 'ask' ? (await pickRun(target.runs.map((r) => r.main), 'Stop warning about which run?'))
      : undefined;
    if (!run) return;
    const key = 'key' in run ? run.key : runKey(run);
    await this.deps.state.update(SILENCED_KEY, [...this.silencedKeys().filter((k) => k !== key), key].slice(-MAX_SILENCED));
    this.deps.log.info(`no more warnings for run ${run.name} (${run.dir}); critical levels still notify`);
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
    void vscode.window.showWarningMessage(`Crash Guard: ${hungMessage(e.run)}`, ACTION_STOP_HUNG, ACTION_LOGS).then((choice) => {
      if (choice === ACTION_STOP_HUNG) void vscode.commands.executeCommand('crashGuard.stopTraining', e.run);
      else if (choice === ACTION_LOGS) void vscode.commands.executeCommand('crashGuard.showLogs');
    });
  }

  /** The escalation ladder acted on its own (autoCleanup / criticalAction): say what it did. */
  onAction(a: ActionParams): void {
    const detail = isCleanupResult(a.result) ? cleanupSummary(a.result) : stopSummary(a.result);
    this.deps.log.warn(`automatic ${a.action} (${a.reason}): ${detail}`);
    if (!a.notify || !this.deps.showNotifications()) return; // another window shows it
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
