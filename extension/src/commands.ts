// The palette commands (category "Crash Guard").
import * as vscode from 'vscode';
import { lastResumableRun, SAFE_TRAINING_CONFIG } from './cli';
import { cleanupSummary, formatBytes, stopSummary } from './format';
import type { Log } from './logger';
import * as P from './protocol';
import { hasPythonExtension } from './pythonExtension';
import type { Recovery } from './recovery';
import type { Report } from './report/panel';
import { SECTION } from './settings';
import type { Sidecar } from './sidecar';
import type { StatusBar } from './statusBar';
import { runTask, TASK_TYPE, type TaskDeps } from './tasks';

export interface CommandDeps {
  log: vscode.LogOutputChannel & Log;
  sidecar: Sidecar;
  statusBar: StatusBar;
  report: Report;
  recovery: Recovery;
  tasks: TaskDeps;
}

const CLEANUP_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 60_000;

async function runs(deps: CommandDeps): Promise<P.RunInfo[]> {
  try {
    return (await deps.sidecar.request<P.RunsResult>(P.METHOD_RUNS, {})).runs;
  } catch {
    return deps.statusBar.lastSample?.runs ?? [];
  }
}

async function emergencyCleanup(deps: CommandDeps): Promise<void> {
  if (deps.sidecar.currentState !== 'running') {
    // Without the sidecar, the CLI still reaches registered runs through their control folders.
    deps.log.warn('sidecar not running: running the cleanup task instead');
    await runTask(deps.tasks, { type: TASK_TYPE, command: 'cleanup' });
    return;
  }
  try {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'Crash Guard: emergency cleanup…' },
      () => deps.sidecar.request<P.CleanupResult>(P.METHOD_CLEANUP, { timeoutMs: CLEANUP_TIMEOUT_MS }));
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

async function stopTraining(deps: CommandDeps, name?: unknown): Promise<void> {
  const live = (await runs(deps)).filter((r) => r.alive);
  let target = typeof name === 'string' ? name : undefined;
  if (!target) {
    if (live.length === 0) {
      void vscode.window.showInformationMessage('Crash Guard: no guarded training run is running.');
      return;
    }
    const only = live.length === 1 ? live[0] : undefined;
    if (only) {
      target = only.name;
    } else {
      const pick = await vscode.window.showQuickPick(live.map((r) => ({
        label: r.name, description: `step ${r.step ?? '?'}, RSS ${formatBytes(r.treeRss)}`,
      })), { title: 'Checkpoint and stop which run?' });
      target = pick?.label;
    }
  }
  if (!target) return;
  const run = target;
  try {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Crash Guard: checkpointing and stopping ${run}…` },
      () => deps.sidecar.request<P.StopResult>(P.METHOD_STOP_RUN, { run, timeoutMs: STOP_TIMEOUT_MS }));
    const text = stopSummary(result);
    deps.log.info(text);
    if (result.ok) void vscode.window.showInformationMessage(`Crash Guard: ${text}`);
    else void vscode.window.showErrorMessage(`Crash Guard: ${text}`);
  } catch (error) {
    void vscode.window.showErrorMessage(`Crash Guard: could not stop ${run}: ${String(error)}`);
  }
}

async function resumeLastRun(deps: CommandDeps): Promise<void> {
  const run = lastResumableRun(await runs(deps));
  if (!run) {
    void vscode.window.showInformationMessage('Crash Guard: no crashed or stopped run to resume.');
    return;
  }
  await deps.recovery.resume(run);
}

async function selectPython(deps: CommandDeps): Promise<void> {
  type Item = vscode.QuickPickItem & { value?: string; action?: 'browse' | 'extension' | 'clear' };
  const items: Item[] = [];
  const folder = vscode.workspace.workspaceFolders?.[0];
  if (folder) {
    for (const rel of ['.venv/bin/python', 'venv/bin/python', '.venv/Scripts/python.exe']) {
      const uri = vscode.Uri.joinPath(folder.uri, rel);
      try {
        await vscode.workspace.fs.stat(uri);
        items.push({ label: `\${workspaceFolder}/${rel}`, description: uri.fsPath, value: `\${workspaceFolder}/${rel}` });
      } catch {
        // not there
      }
    }
  }
  items.push({ label: 'python3', description: 'from PATH', value: 'python3' });
  if (hasPythonExtension()) items.push({ label: 'Use the Python extension\'s interpreter…', action: 'extension' });
  items.push({ label: 'Browse…', action: 'browse' }, { label: 'Clear the setting (discover automatically)', action: 'clear' });
  const current = vscode.workspace.getConfiguration(SECTION).get<string>('pythonPath') ?? '';
  const pick = await vscode.window.showQuickPick(items, {
    title: 'Python interpreter for the Crash Guard sidecar',
    placeHolder: current ? `current: ${current}` : `now: ${deps.sidecar.interpreter?.path ?? 'python3'} (discovered)`,
  });
  if (!pick) return;
  let value: string | undefined = pick.value;
  if (pick.action === 'extension') {
    await vscode.commands.executeCommand('python.setInterpreter');
    value = '';
  } else if (pick.action === 'clear') {
    value = '';
  } else if (pick.action === 'browse') {
    const uris = await vscode.window.showOpenDialog({ canSelectMany: false, title: 'Python interpreter',
      defaultUri: folder?.uri });
    if (!uris?.[0]) return;
    value = uris[0].fsPath;
  }
  const target = folder ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  // The configuration listener restarts the sidecar when pythonPath changes.
  await vscode.workspace.getConfiguration(SECTION).update('pythonPath', value || undefined, target);
  if (value === current || (!value && !current)) await deps.sidecar.restart();
}

export function registerCommands(context: vscode.ExtensionContext, deps: CommandDeps): void {
  const reg = (id: string, fn: (...args: unknown[]) => unknown) =>
    context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  reg('crashGuard.emergencyCleanup', () => emergencyCleanup(deps));
  reg('crashGuard.startMonitor', () => deps.sidecar.restart());
  reg('crashGuard.stopMonitor', () => deps.sidecar.stop());
  reg('crashGuard.startSafeTraining', () => runTask(deps.tasks,
    { type: TASK_TYPE, command: 'train', config: SAFE_TRAINING_CONFIG }, 'Safe Training (Low Memory)'));
  reg('crashGuard.stopTraining', (name) => stopTraining(deps, name));
  reg('crashGuard.resumeLastRun', () => resumeLastRun(deps));
  reg('crashGuard.showLogs', () => deps.log.show());
  reg('crashGuard.restartSidecar', () => deps.sidecar.restart());
  reg('crashGuard.selectPython', () => selectPython(deps));
  reg('crashGuard.showReport', () => deps.report.show());
}

