// Wiring only: each concern lives in its own module.
import * as vscode from 'vscode';
import { registerCommands } from './commands';
import { Config } from './config';
import { registerLaunch } from './launch';
import { createLogChannel } from './logger';
import * as P from './protocol';
import { resolveInterpreter, type Interpreter } from './python';
import { activeInterpreter, onInterpreterChange } from './pythonExtension';
import { Recovery } from './recovery';
import { Report } from './report/panel';
import { Sidecar } from './sidecar';
import { StatusBar } from './statusBar';
import { CrashGuardTaskProvider, TASK_TYPE, type TaskDeps } from './tasks';
import { Warnings } from './warnings';

let sidecar: Sidecar | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const activatedAt = Date.now();
  const log = createLogChannel();
  context.subscriptions.push(log);
  log.info(`Crash Guard ${(context.extension.packageJSON as { version: string }).version} activating`);

  const folder = (): vscode.WorkspaceFolder | undefined => vscode.workspace.workspaceFolders?.[0];
  const config = new Config(log, (settings, change) => {
    if (change.restart) {
      log.info('crashGuard.pythonPath changed: restarting the sidecar');
      void sidecar?.restart();
    } else if (Object.keys(change.sidecar).length > 0) {
      log.info(`settings changed: ${JSON.stringify(change.sidecar)}`);
      sidecar?.pushSettings(settings).catch((e: unknown) => log.warn(`sending settings: ${String(e)}`));
    }
  });
  const interpreter = (): Promise<Interpreter> => resolveInterpreter({
    setting: config.settings.pythonPath,
    env: process.env,
    workspaceFolder: folder()?.uri.fsPath,
    pythonExtension: () => activeInterpreter(folder()?.uri),
  });
  const taskDeps: TaskDeps = { interpreter: async () => sidecar?.interpreter ?? interpreter(), folder };

  const statusBar = new StatusBar(log, activatedAt, () => config.settings.sampleIntervalMs);
  const report = new Report({
    log, extensionUri: context.extensionUri, latest: () => statusBar.lastSample, sidecarState: () => statusBar.sidecarState,
    request: <R>(method: string, params: unknown) => {
      if (!sidecar) return Promise.reject(new Error('the sidecar is not running'));
      return sidecar.request<R>(method, params);
    },
  });
  const recovery = new Recovery(log, context.workspaceState, taskDeps, () => config.settings.showNotifications);
  const warnings = new Warnings({
    log,
    showNotifications: () => config.settings.showNotifications,
    liveRuns: () => statusBar.lastSample?.runs.filter((r) => r.alive).map((r) => r.name) ?? [],
  });

  let checkedRuns = false;
  sidecar = new Sidecar({ log, outputChannel: log, settings: () => config.settings, interpreter, cwd: () => folder()?.uri.fsPath }, {
    onState: (state, detail) => statusBar.setState(state, detail),
    onSample: (sample: P.Sample) => {
      statusBar.update(sample);
      report.onSample(sample);
      if (!checkedRuns) {
        checkedRuns = true; // crash recovery on activation: runs that died while the editor was closed
        recovery.onRuns(sample.runs);
      }
    },
    onWarning: (w) => warnings.onWarning(w),
    onRunEvent: (e) => recovery.onRunEvent(e),
    onAction: (a) => warnings.onAction(a),
    onBackendMissing: (python, reason) => {
      void vscode.window.showErrorMessage(
        `Crash Guard: python_backend is not importable with ${python.path} (${python.source}): ${reason}. ` +
        'Select a Python that has it (pip install -e . in this repository).', 'Select Python', 'Show Logs',
      ).then((choice) => {
        if (choice === 'Select Python') void vscode.commands.executeCommand('crashGuard.selectPython');
        else if (choice === 'Show Logs') log.show();
      });
    },
    onFailure: (message) => {
      void vscode.window.showErrorMessage(message, 'Restart Sidecar', 'Show Logs').then((choice) => {
        if (choice === 'Restart Sidecar') void sidecar?.restart();
        else if (choice === 'Show Logs') log.show();
      });
    },
  });

  context.subscriptions.push(
    config, statusBar, report, sidecar,
    vscode.tasks.registerTaskProvider(TASK_TYPE, new CrashGuardTaskProvider(taskDeps)),
  );
  registerLaunch(context, () => config.settings.runsDirectory);
  registerCommands(context, { log, sidecar, statusBar, report, recovery, tasks: taskDeps });

  void sidecar.restart();
  void onInterpreterChange(() => {
    if (!config.settings.pythonPath && !process.env.CRASH_GUARD_PYTHON) void sidecar?.restart();
  }).then((d) => d && context.subscriptions.push(d));
  log.info(`activated in ${Date.now() - activatedAt} ms`);
}

export async function deactivate(): Promise<void> {
  const s = sidecar;
  sidecar = undefined;
  await s?.shutdown();
}
