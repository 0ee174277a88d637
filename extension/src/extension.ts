// Wiring only: each concern lives in its own module.
import * as fs from 'node:fs';
import * as vscode from 'vscode';
import { registerCommands } from './commands';
import { Config, RunsDirectories } from './config';
import { TrainingFolders } from './folders';
import { registerLaunch } from './launch';
import { createLogChannel } from './logger';
import { MonitorPython } from './monitorPython';
import { MonitorSwitch } from './monitorSwitch';
import * as P from './protocol';
import { chooseSidecarInterpreter, probePython, resolveTrainingInterpreter, type DiscoveryInputs } from './python';
import { activeInterpreter, PythonExtensionWatch } from './pythonExtension';
import { Recovery } from './recovery';
import { Report } from './report/panel';
import { SECTION, sidecarSettings } from './settings';
import { Sidecar } from './sidecar';
import { StatusBar } from './statusBar';
import { CrashGuardTaskProvider, TASK_TYPE, type TaskDeps } from './tasks';
import { Training } from './training';
import { Warnings } from './warnings';

let sidecar: Sidecar | undefined;

/** A registration that exists only while `wanted()` holds (re-checked by update()). */
class Registration implements vscode.Disposable {
  private current: vscode.Disposable | undefined;

  constructor(private readonly wanted: () => boolean, private readonly register: () => vscode.Disposable) {
    this.update();
  }

  update(): void {
    if (this.wanted() && !this.current) this.current = this.register();
    else if (!this.wanted() && this.current) {
      this.current.dispose();
      this.current = undefined;
    }
  }

  dispose(): void {
    this.current?.dispose();
  }
}

export function activate(context: vscode.ExtensionContext): void {
  const activatedAt = Date.now();
  const log = createLogChannel();
  context.subscriptions.push(log);
  log.info(`Crash Guard ${(context.extension.packageJSON as { version: string }).version} activating ` +
    `(workspace ${vscode.workspace.isTrusted ? 'trusted' : 'in Restricted Mode'})`);

  // Everything Python runs in a folder no workspace controls, from files inside the installed extension.
  const launcher = context.asAbsolutePath('bundled/tool/sidecar.py');
  const probeScript = context.asAbsolutePath('bundled/tool/probe.py');
  const storage = context.globalStorageUri.fsPath;
  const cwd = async (): Promise<string> => {
    await fs.promises.mkdir(storage, { recursive: true });
    return storage;
  };
  const wheelDir = context.asAbsolutePath('bundled/wheels');
  const wheel = fs.existsSync(wheelDir) ? fs.readdirSync(wheelDir).filter((f) => /^crashguard-.*\.whl$/.test(f))
    .map((f) => `${wheelDir}/${f}`)[0] : undefined;

  const monitorPython = new MonitorPython({
    log, state: context.globalState, trusted: () => vscode.workspace.isTrusted,
    probe: (python) => cwd().then((dir) => probePython(python, probeScript, dir)),
    restart: () => monitor.replace(), // a new monitor process, on the chosen interpreter
  });
  const firstFolder = (): vscode.WorkspaceFolder | undefined => vscode.workspace.workspaceFolders?.[0];
  // C3: a folder's own settings may name runs folders inside it only.
  const runsDirs = new RunsDirectories(log);
  const runsDirectory = (folder: vscode.WorkspaceFolder): string => runsDirs.of(folder);
  const runsDirectories = (): string[] => (vscode.workspace.workspaceFolders ?? []).map(runsDirectory);
  const discovery = (): DiscoveryInputs => ({
    setting: config.settings.pythonPath,
    env: process.env,
    workspaceFolder: firstFolder()?.uri.fsPath,
    pythonExtension: () => activeInterpreter(firstFolder()?.uri),
    monitorChoice: monitorPython.choice,
  });
  const trusted = (): boolean => vscode.workspace.isTrusted;

  const config = new Config(log, (_settings, change) => {
    if (change.restart) {
      log.info('crashGuard.pythonPath changed: checking the interpreters again');
      void monitor.startIfWanted(true);
      if (trusted()) void training.check();
    } else if (change.reconnect) {
      log.info(`crashGuard.monitorPerWindow is ${config.settings.monitorPerWindow ? 'on' : 'off'}: reconnecting`);
      void monitor.startIfWanted();
    } else if (Object.keys(change.sidecar).length > 0) {
      log.info(`settings changed: ${JSON.stringify(change.sidecar)}`);
      sidecar?.pushSettings().catch((e: unknown) => log.warn(`sending settings: ${String(e)}`));
    }
  });
  const folders = new TrainingFolders(log, runsDirectory);
  const training = new Training({
    log, probeScript, cwd, wheel,
    interpreter: () => resolveTrainingInterpreter(discovery()),
    hasTrainingFolder: () => folders.folders.length > 0,
    monitor: () => sidecar?.interpreter,
  });
  const statusBar = new StatusBar({ log, activatedAt, intervalMs: () => config.settings.sampleIntervalMs,
    pythonLines: () => training.pythonLines(), topProcesses: () => config.settings.topProcesses,
    gpuMode: () => config.settings.gpuStatusBar, transportNote: () => sidecar?.transportNote ?? null });
  const taskDeps: TaskDeps = {
    log,
    launch: (python) => training.launch(python),
    trainingFolders: () => folders.folders,
    folder: () => {
      const active = vscode.window.activeTextEditor && vscode.workspace.getWorkspaceFolder(vscode.window.activeTextEditor.document.uri);
      return (active && folders.has(active) ? active : undefined) ?? folders.folders[0] ?? firstFolder();
    },
    runsDirectory,
    runs: () => statusBar.lastSample?.runs ?? [],
  };
  const report = new Report({
    log, extensionUri: context.extensionUri, latest: () => statusBar.lastSample, sidecarState: () => statusBar.sidecarState,
    request: (method, params, result) => {
      if (!sidecar) return Promise.reject(new Error('the memory monitor is not running'));
      return sidecar.request(method, params, result);
    },
  });
  const recovery = new Recovery(log, context.workspaceState, taskDeps, () => config.settings.showNotifications,
    (method, params, result) => sidecar ? sidecar.request(method, params, result) : Promise.reject(new Error('the memory monitor is not running')));
  const warnings = new Warnings({
    log, state: context.workspaceState,
    showNotifications: () => config.settings.showNotifications,
    cooldownMinutes: () => config.settings.notificationCooldownMinutes,
    runs: () => statusBar.lastSample?.runs ?? [],
  });

  // The task type is offered (even as an empty group in "Run Task") only while a folder trains with Crash Guard.
  const taskProvider = new Registration(() => folders.folders.length > 0,
    () => vscode.tasks.registerTaskProvider(TASK_TYPE, new CrashGuardTaskProvider(taskDeps)));

  sidecar = new Sidecar({
    log, outputChannel: log, launcher, cwd, trusted, focused: () => vscode.window.state.focused,
    perWindow: () => config.settings.monitorPerWindow,
    development: context.extensionMode === vscode.ExtensionMode.Development,
    settings: () => sidecarSettings(config.settings, runsDirectories()),
    interpreter: () => chooseSidecarInterpreter(discovery(), (python) => cwd().then((dir) => probePython(python, probeScript, dir))),
  }, {
    onState: (state, detail) => {
      statusBar.setState(state, detail);
      training.render();
    },
    onStarted: () => {
      training.render();
      // Runs that crashed while no sidecar watched (the first scan of a directory is a baseline, not events).
      sidecar?.request(P.METHOD_RUNS, {}, P.RunsResult).then((r) => recovery.onRuns(r.runs),
        (e: unknown) => log.warn(`asking for crashed runs: ${String(e)}`));
    },
    onSample: (sample) => {
      statusBar.update(sample);
      report.onSample(sample);
    },
    onWarning: (w) => warnings.onWarning(w),
    onRunEvent: (e) => {
      recovery.onRunEvent(e);
      warnings.onRunEvent(e);
    },
    onAction: (a) => warnings.onAction(a),
    onFailure: (message) => {
      void vscode.window.showErrorMessage(message, 'Restart Memory Monitor', 'Show Logs').then((choice) => {
        if (choice === 'Restart Memory Monitor') void monitor.turnOn();
        else if (choice === 'Show Logs') log.show();
      });
    },
    onIncompatible: (message) => {
      void vscode.window.showErrorMessage(message, 'Show Logs').then((choice) => choice && log.show());
    },
  });

  const monitor = new MonitorSwitch(context.workspaceState, sidecar);
  context.subscriptions.push(
    config, folders, training, statusBar, report, sidecar, warnings, taskProvider, recovery,
    training.onDidChange(() => statusBar.refresh()),
    folders.onDidChange(() => {
      training.render();
      taskProvider.update();
    }),
    vscode.workspace.onDidChangeWorkspaceFolders(() => void sidecar?.pushSettings()),
    // One monitor for every window: a warning shows in the focused one.
    vscode.window.onDidChangeWindowState((state) => sidecar?.reportFocus(state.focused)),
    vscode.workspace.onDidChangeConfiguration((e) => {
      // A folder's own runs directory (resource scope) is not in the window-level diff of Config.
      if (e.affectsConfiguration(`${SECTION}.runsDirectory`)) {
        folders.refresh();
        void sidecar?.pushSettings();
      }
      if (e.affectsConfiguration(`${SECTION}.gpuStatusBar`)) statusBar.refresh();
    }),
    // Restricted Mode: nothing runs until the user trusts the folder; then the monitor starts.
    vscode.workspace.onDidGrantWorkspaceTrust(() => {
      log.info('workspace trusted: starting the memory monitor');
      void monitor.startIfWanted();
      void training.check();
    }),
  );
  registerLaunch(context, {
    log,
    isTrainingFolder: (folder) => folders.has(folder),
    runsDirectorySetting: (folder) => (folder ? runsDirs.choice(folder).setting
      : vscode.workspace.getConfiguration(SECTION).inspect<string>('runsDirectory')?.globalValue ?? 'runs'),
    launch: (python) => training.launch(python),
  });
  registerCommands(context, {
    log, sidecar, statusBar, report, recovery, tasks: taskDeps, training, folders, monitor,
    selectMonitorPython: () => monitorPython.select(),
    configTemplate: vscode.Uri.joinPath(context.extensionUri, 'config', 'safe_training.json'),
  });

  void monitor.startIfWanted();
  if (trusted()) void training.check();
  // The Python extensions may activate after Crash Guard (when a Python file opens): look again then. A running
  // monitor is left alone (it needs only some Python >= 3.10; a restart would lose its history); one that found no
  // Python gets another try.
  const interpreterWatch = new PythonExtensionWatch();
  context.subscriptions.push(interpreterWatch, interpreterWatch.onDidChange((why) => {
    if (!trusted()) return;
    log.info(`Python extensions: ${why}; checking the interpreters again`);
    void training.check();
    if (sidecar?.currentState === 'noPython') void monitor.startIfWanted();
  }));
  log.info(`activated in ${Date.now() - activatedAt} ms`);
}

export async function deactivate(): Promise<void> {
  const s = sidecar;
  sidecar = undefined;
  await s?.shutdown();
}
