// Threshold notifications: one per level entered (no repeats while memory stays at that level), with actions.
// Popups are fire-and-forget: nothing here blocks the sidecar's message handling.
import * as vscode from 'vscode';
import { cleanupSummary, stopSummary } from './format';
import { WarningTracker } from './levels';
import type { Log } from './logger';
import type { ActionParams, CleanupResult, StopResult, WarningParams } from './protocol';

export const ACTION_CLEANUP = 'Emergency Cleanup';
export const ACTION_REPORT = 'Show Report';
export const ACTION_STOP = 'Stop Training (checkpoint)';

export interface WarningDeps {
  log: Log;
  showNotifications(): boolean;
  /** Names of live guarded runs (from the latest sample), used when the warning itself names none. */
  liveRuns(): string[];
}

export class Warnings {
  private readonly tracker = new WarningTracker();

  constructor(private readonly deps: WarningDeps) {}

  onWarning(w: WarningParams): void {
    this.deps.log.info(`level change: ${w.resource} ${w.previous} → ${w.level} (${w.percent.toFixed(1)}%)`);
    if (!this.tracker.update(w.resource, w.level)) return;
    if (!this.deps.showNotifications()) return;
    const runs = w.runs.length > 0 ? w.runs : this.deps.liveRuns();
    const actions = [ACTION_CLEANUP, ACTION_REPORT];
    if (runs.length > 0) actions.push(ACTION_STOP);
    const text = `Crash Guard: ${w.message}`;
    const shown = w.level === 'critical'
      ? vscode.window.showErrorMessage(text, ...actions)
      : vscode.window.showWarningMessage(text, ...actions);
    void shown.then((choice) => {
      if (choice === ACTION_CLEANUP) void vscode.commands.executeCommand('crashGuard.emergencyCleanup');
      else if (choice === ACTION_REPORT) void vscode.commands.executeCommand('crashGuard.showReport');
      else if (choice === ACTION_STOP) void vscode.commands.executeCommand('crashGuard.stopTraining', runs[0]);
    });
  }

  /** The escalation ladder acted on its own (autoCleanup / criticalAction): say what it did. */
  onAction(a: ActionParams): void {
    const detail = a.action === 'cleanup'
      ? cleanupSummary(a.result as CleanupResult)
      : stopSummary(a.result as StopResult);
    this.deps.log.warn(`automatic ${a.action} (${a.reason}): ${detail}`);
    if (!this.deps.showNotifications()) return;
    const text = a.action === 'cleanup'
      ? `Crash Guard ran an automatic cleanup (${a.reason}). ${detail}`
      : `Crash Guard checkpointed and stopped a run (${a.reason}). ${detail}`;
    void vscode.window.showInformationMessage(text, ACTION_REPORT).then((choice) => {
      if (choice === ACTION_REPORT) void vscode.commands.executeCommand('crashGuard.showReport');
    });
  }

  reset(): void {
    this.tracker.reset();
  }
}

