// The palette commands (category "Crash Guard").
import * as vscode from 'vscode';
import { cleanupDefinition, SAFE_TRAINING_CONFIG, trainDefinition } from './cli';
import { lastResumableRun } from './crashes';
import { cleanupSummary, stopSummary } from './format';
import type { Log } from './logger';
import type { MonitorSwitch } from './monitorSwitch';
import * as P from './protocol';
import type { TrainingFolders } from './folders';
import type { Recovery } from './recovery';
import type { Report } from './report/panel';
import { pickRun } from './runPick';
import { addSafeTraining, TRAINING_TASK_LABEL } from './scaffold';
import type { Sidecar } from './sidecar';
import type { StatusBar } from './statusBar';
import { runTask, type TaskDeps } from './tasks';
import type { Training } from './training';

export interface CommandDeps {
  log: vscode.LogOutputChannel & Log;
  sidecar: Sidecar;
  statusBar: StatusBar;
  report: Report;
  recovery: Recovery;
  tasks: TaskDeps;
  training: Training;
  folders: TrainingFolders;
  /** Start / Stop Memory Monitor, remembered across reloads. */
  monitor: MonitorSwitch;
  /** Select Python for the Memory Monitor (monitorPython.ts). */
  selectMonitorPython(): Promise<void>;
  /** The starter config shipped with the extension (config/safe_training.json). */
  configTemplate: vscode.Uri;
}

const CLEANUP_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 60_000;

async function runs(deps: CommandDeps): Promise<P.RunInfo[]> {
  try {
    return (await deps.sidecar.request(P.METHOD_RUNS, {}, P.RunsResult)).runs;
  } catch {
    return deps.statusBar.lastSample?.runs ?? [];
  }
}

async function emergencyCleanup(deps: CommandDeps): Promise<void> {
  if (deps.sidecar.currentState !== 'running') {
    // Without the sidecar, the CLI still reaches registered runs through their control folders.
    const folder = deps.tasks.folder();
    if (!folder || !vscode.workspace.isTrusted) {
      void vscode.window.showWarningMessage('Crash Guard: the memory monitor is not running; start it first.', 'Start Memory Monitor')
        .then((c) => c && void deps.monitor.turnOn());
      return;
    }
    deps.log.warn('memory monitor not running: running the cleanup task instead');
    await runTask(deps.tasks, cleanupDefinition(deps.tasks.runsDirectory(folder)), undefined, folder);
    return;
  }
  try {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'Crash Guard: emergency cleanup…' },
      () => deps.sidecar.request(P.METHOD_CLEANUP, { timeoutMs: CLEANUP_TIMEOUT_MS } satisfies P.CleanupParams, P.CleanupResult));
    const summary = cleanupSummary(result);
    deps.log.info(summary);
    void vscode.window.showInformationMessage(summary, 'Show Report').then((c) => {
      if (c) void deps.report.show();
    });
  } catch (error) {
    deps.log.error(`emergency cleanup failed: ${String(error)}`);
    void vscode.window.showErrorMessage(`Crash Guard: emergency cleanup failed: ${String(error)}`, 'Show Logs')
      .then((c) => c && deps.log.show());
  }
}

const hasDir = (x: unknown): x is { dir: unknown } => typeof x === 'object' && x !== null && 'dir' in x;

/**
 * The run to stop: the one given (a RunInfo, or a name), one of several given (a toast's close runs, heaviest
 * first: the user picks), the only live one, or the user's pick of the live ones. Only a run that is live now.
 */
async function stopTarget(deps: CommandDeps, given: unknown): Promise<P.RunInfo | undefined> {
  const live = (await runs(deps)).filter((r) => r.alive && r.rank === 0);
  if (hasDir(given)) return live.find((r) => r.dir === given.dir);
  if (typeof given === 'string') return live.find((r) => r.name === given);
  const offered = Array.isArray(given)
    ? given.filter(hasDir).flatMap((g) => live.filter((r) => r.dir === g.dir)) : live;
  if (offered.length === 0) {
    void vscode.window.showInformationMessage('Crash Guard: no guarded training run is running.');
    return undefined;
  }
  if (offered.length === 1) return offered[0];
  return pickRun(offered, 'Checkpoint and stop which run?');
}

async function stopTraining(deps: CommandDeps, given?: unknown): Promise<void> {
  const target = await stopTarget(deps, given);
  if (!target) return;
  const run = target.name;
  try {
    const params: P.StopRunParams = { run, dir: target.dir, timeoutMs: STOP_TIMEOUT_MS };
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Crash Guard: checkpointing and stopping ${run}…` },
      () => deps.sidecar.request(P.METHOD_STOP_RUN, params, P.StopResult));
    const text = stopSummary(result);
    deps.log.info(text);
    if (result.ok) void vscode.window.showInformationMessage(`Crash Guard: ${text}`);
    else void vscode.window.showErrorMessage(`Crash Guard: ${text}`);
  } catch (error) {
    void vscode.window.showErrorMessage(`Crash Guard: could not stop ${run}: ${String(error)}`);
  }
}

async function resumeLastRun(deps: CommandDeps): Promise<void> {
  const run = lastResumableRun(await runs(deps), Date.now() / 1000);
  if (!run) {
    void vscode.window.showInformationMessage('Crash Guard: no crashed or stopped run to resume.');
    return;
  }
  await deps.recovery.resume(run);
}

async function addSafeTrainingCommand(deps: CommandDeps): Promise<void> {
  const folders = vscode.workspace.workspaceFolders ?? [];
  if (folders.length === 0) {
    void vscode.window.showInformationMessage('Crash Guard: open a folder first, then add safe training to it.');
    return;
  }
  const folder = folders.length === 1 ? folders[0] : await vscode.window.showWorkspaceFolderPick({
    placeHolder: 'Add Crash Guard safe training to which folder?' });
  if (!folder) return;
  const done = await addSafeTraining(folder, deps.configTemplate, deps.log);
  deps.folders.refresh();
  const wrote = [done.config && SAFE_TRAINING_CONFIG, done.launch && 'the F5 configuration in .vscode/launch.json',
    done.task && `the task "${TRAINING_TASK_LABEL}" in .vscode/tasks.json`].filter(Boolean).join(', ');
  void vscode.window.showInformationMessage(wrote ? `Crash Guard: added ${wrote} to ${folder.name}.`
    : `Crash Guard: ${folder.name} already has safe training.`, 'Open Config').then((c) => {
    if (c) void vscode.window.showTextDocument(vscode.Uri.joinPath(folder.uri, SAFE_TRAINING_CONFIG));
  });
  if (deps.training.current?.kind !== 'ready') void deps.training.check();
}

async function startSafeTraining(deps: CommandDeps): Promise<void> {
  const folder = deps.tasks.folder();
  if (!folder || !deps.folders.has(folder)) {
    const add = 'Add Safe Training to this Folder';
    void vscode.window.showInformationMessage('Crash Guard: this folder has no Crash Guard training config yet.', add)
      .then((c) => c && void vscode.commands.executeCommand('crashGuard.addSafeTraining'));
    return;
  }
  if (deps.training.current?.kind !== 'ready') {
    await deps.training.setUp();
    return;
  }
  await runTask(deps.tasks, trainDefinition(deps.tasks.runsDirectory(folder)), 'Safe Training (Low Memory)', folder);
}

/** Start Memory Monitor: on when it is off or down; when it runs, says so (Restart Memory Monitor restarts it). */
async function startMonitor(deps: CommandDeps): Promise<void> {
  const state = deps.statusBar.sidecarState;
  if (state === 'running' || state === 'starting') {
    void vscode.window.showInformationMessage(`Crash Guard: the memory monitor is ${state === 'running' ? 'already running' : 'starting'}.`);
    return;
  }
  await deps.monitor.turnOn();
}

export function registerCommands(context: vscode.ExtensionContext, deps: CommandDeps): void {
  const reg = (id: string, fn: (...args: unknown[]) => unknown) =>
    context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  reg('crashGuard.emergencyCleanup', () => emergencyCleanup(deps));
  reg('crashGuard.startMonitor', () => startMonitor(deps));
  reg('crashGuard.stopMonitor', () => deps.monitor.turnOff());
  reg('crashGuard.startSafeTraining', () => startSafeTraining(deps));
  reg('crashGuard.stopTraining', (name) => stopTraining(deps, name));
  reg('crashGuard.resumeLastRun', () => resumeLastRun(deps));
  reg('crashGuard.showLogs', () => deps.log.show());
  // "Restart Memory Monitor" (the id is older than the name): a new monitor process, whatever its state; the other
  // windows reconnect to it.
  reg('crashGuard.restartSidecar', () => deps.monitor.replace());
  reg('crashGuard.selectMonitorPython', () => deps.selectMonitorPython());
  reg('crashGuard.selectPython', () => deps.training.choose());
  reg('crashGuard.setUpTraining', () => deps.training.setUp());
  reg('crashGuard.addSafeTraining', () => addSafeTrainingCommand(deps));
  reg('crashGuard.showReport', () => deps.report.show());
}

