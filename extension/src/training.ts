// The training environment: whether the interpreter for tasks, F5 and resume has crashguard[train], shown quietly
// (a status-bar item only where a folder trains with Crash Guard, a language status item, the gauge's tooltip;
// never a toast on activation, never red), and "Set Up Crash Guard Training…" to fix it: pick the environment,
// install the package into it with progress, or copy the command.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import * as vscode from 'vscode';
import type { PythonLines } from './format';
import { inlineCode, markdownText } from './escape';
import type { Log } from './logger';
import { crashguardLaunch, type LaunchChoice } from './isolation';
import { probePython, trainingState, type Interpreter, type Probe, type SidecarChoice, type TrainingState } from './python';
import { hasPythonExtension, pickWithPythonExtension } from './pythonExtension';
import { SECTION } from './settings';

export const CMD_SET_UP = 'crashGuard.setUpTraining';
const SET_UP_TITLE = 'Set Up Crash Guard Training…';

export interface TrainingDeps {
  log: Log;
  interpreter(): Promise<Interpreter>;
  probeScript: string;
  cwd(): Promise<string>;
  /** The crashguard wheel shipped in the .vsix (the same version as the extension), if any. */
  wheel: string | undefined;
  /** Whether any folder trains with Crash Guard (only then does the status-bar item show). */
  hasTrainingFolder(): boolean;
  monitor(): SidecarChoice | undefined;
}

function describe(state: TrainingState): string {
  const where = `${state.interpreter.path} (${state.interpreter.source})`;
  switch (state.kind) {
    case 'ready': return `crashguard ${state.info.crashguard ?? '(source)'} in ${where}`;
    case 'missing': return `not set up: ${state.missing.join(', ')} missing in ${where}`;
    case 'unusable': return `not set up: ${state.reason}`;
  }
}

export class Training implements vscode.Disposable {
  private state: TrainingState | undefined;
  private readonly item: vscode.StatusBarItem;
  private readonly language: vscode.LanguageStatusItem;
  private readonly emitter = new vscode.EventEmitter<void>();
  readonly onDidChange = this.emitter.event;
  private checking: Promise<void> | undefined;

  constructor(private readonly deps: TrainingDeps) {
    this.item = vscode.window.createStatusBarItem('crashGuard.training', vscode.StatusBarAlignment.Left, 98);
    this.item.name = 'Crash Guard Training';
    this.item.command = CMD_SET_UP;
    this.item.accessibilityInformation = { label: 'Crash Guard: training is not set up; activate to set it up' };
    this.language = vscode.languages.createLanguageStatusItem('crashGuard.python', [
      { language: 'python' }, { language: 'json', pattern: '**/{config/safe_training*,*.crashguard}.json' }]);
    this.language.name = 'Crash Guard';
    this.render();
  }

  get current(): TrainingState | undefined {
    return this.state;
  }

  /** Probes the training interpreter again (activation, a changed setting, after set-up). */
  check(): Promise<void> {
    this.checking ??= (async () => {
      try {
        const interpreter = await this.deps.interpreter();
        const probe = await probePython(interpreter.path, this.deps.probeScript, await this.deps.cwd());
        this.state = trainingState(interpreter, probe);
        this.deps.log.info(`training environment: ${describe(this.state)}`);
      } finally {
        this.checking = undefined;
      }
      this.render();
      this.emitter.fire();
    })();
    return this.checking;
  }

  /**
   * How crashguard starts in the training environment (probed now: what was installed since counts), or in
   * `python` (a run's recorded interpreter, a debug configuration's): isolated from the folder (isolation.ts).
   */
  async launch(python?: string): Promise<LaunchChoice> {
    // Probing runs the interpreter, which may be the workspace's own (.venv): never in Restricted Mode.
    if (!vscode.workspace.isTrusted) return { ok: false, why: 'the workspace is not trusted (Restricted Mode)' };
    let probe: Probe;
    if (python === undefined) {
      await this.check();
      const s = this.state;
      if (!s || s.kind === 'unusable') return { ok: false, why: s ? s.reason : 'no training interpreter' };
      probe = { ok: true, info: s.info };
    } else {
      probe = await probePython(python, this.deps.probeScript, await this.deps.cwd());
      if (!probe.ok) return { ok: false, why: probe.reason };
    }
    return crashguardLaunch(probe.info, process.env);
  }

  /** The tooltip's lines: which Python runs the monitor, and the training environment. */
  pythonLines(): PythonLines {
    const m = this.deps.monitor();
    // The probe's answers (version, path) come from an interpreter a folder may have chosen: shown as text only.
    const monitor = m ? `**Monitor**: Python ${markdownText(m.info.version)} (${inlineCode(m.info.executable)}, ${m.interpreter.source})`
      : '**Monitor**: no Python yet';
    const s = this.state;
    const training = !s ? '**Training**: checking…'
      : s.kind === 'ready' ? `**Training**: crashguard ${markdownText(s.info.crashguard ?? '(source)')} in ${inlineCode(s.info.executable)}`
        : `**Training**: not set up — [${SET_UP_TITLE}](command:${CMD_SET_UP})`;
    return { monitor, training };
  }

  render(): void {
    const s = this.state;
    const m = this.deps.monitor();
    const monitorText = m ? `monitor: Python ${m.info.version}` : 'monitor: starting';
    this.language.text = '$(pulse) Crash Guard';
    this.language.detail = `${monitorText} · training: ${!s ? 'checking' : s.kind === 'ready' ? `crashguard ${s.info.crashguard ?? ''}` : 'not set up'}`;
    this.language.severity = vscode.LanguageStatusSeverity.Information;
    this.language.command = s?.kind === 'ready' ? undefined : { command: CMD_SET_UP, title: SET_UP_TITLE };
    // A status-bar state only where a folder trains with Crash Guard and the environment is not ready; never red.
    if (s && s.kind !== 'ready' && this.deps.hasTrainingFolder()) {
      this.item.text = '$(tools) Crash Guard: set up training';
      this.item.tooltip = `Crash Guard training is ${describe(s)}. Click to set it up.`;
      this.item.show();
    } else {
      this.item.hide();
    }
  }

  /** "Set Up Crash Guard Training…": pick the environment, install crashguard[train] there, or copy the command. */
  async setUp(): Promise<void> {
    if (!this.trustedOrSay()) return;
    await this.check();
    const s = this.state;
    const python = s?.interpreter.path ?? 'python3';
    type Item = vscode.QuickPickItem & { run: () => Promise<void> };
    const items: Item[] = [{ label: '$(folder-library) Choose the training environment…',
      detail: `now: ${s ? describe(s) : python}`, run: () => this.choose() }];
    if (s && s.kind !== 'unusable' && s.info.pip) {
      items.push({ label: `$(cloud-download) Install crashguard[train] into ${python}`,
        detail: this.deps.wheel ? `from the wheel shipped with the extension (${path.basename(this.deps.wheel)})` : 'from your package index',
        run: () => this.install(s.interpreter, s.info.found.torch !== null) });
    }
    items.push({ label: '$(copy) Copy the install command', detail: this.installCommand(python).join(' '),
      run: async () => {
        await vscode.env.clipboard.writeText(this.installCommand(python).map((a) => (/\s/.test(a) ? `"${a}"` : a)).join(' '));
        void vscode.window.showInformationMessage('Crash Guard: the install command is on the clipboard.');
      } });
    const pick = await vscode.window.showQuickPick(items, { title: SET_UP_TITLE });
    await pick?.run();
  }

  private installCommand(python: string): string[] {
    return [python, '-m', 'pip', 'install', this.deps.wheel ? `${this.deps.wheel}[train]` : 'crashguard[train]'];
  }

  /** Set-up runs interpreters: never in Restricted Mode (a workspace's .venv/bin/python is the workspace's code). */
  private trustedOrSay(): boolean {
    if (vscode.workspace.isTrusted) return true;
    const manage = 'Manage Workspace Trust';
    void vscode.window.showInformationMessage('Crash Guard sets up training only in a trusted workspace.', manage)
      .then((c) => c && void vscode.commands.executeCommand('workbench.trust.manage'));
    return false;
  }

  async choose(): Promise<void> {
    if (!this.trustedOrSay()) return;
    type Item = vscode.QuickPickItem & { value?: string; action?: 'browse' | 'extension' | 'clear' };
    const items: Item[] = [];
    for (const folder of vscode.workspace.workspaceFolders ?? []) {
      for (const rel of ['.venv/bin/python', 'venv/bin/python', '.venv/Scripts/python.exe']) {
        const full = path.join(folder.uri.fsPath, rel);
        if (fs.existsSync(full)) items.push({ label: rel, description: folder.name, value: full });
      }
    }
    if (hasPythonExtension()) items.push({ label: 'Pick with the Python extension…', action: 'extension' });
    items.push({ label: 'python3', description: 'from PATH', value: 'python3' },
      { label: 'Browse…', action: 'browse' }, { label: 'Clear the setting (discover automatically)', action: 'clear' });
    const pick = await vscode.window.showQuickPick(items, { title: 'Python environment for Crash Guard training' });
    if (!pick) return;
    let value = pick.value;
    if (pick.action === 'extension') value = await pickWithPythonExtension(vscode.workspace.workspaceFolders?.[0]?.uri);
    else if (pick.action === 'clear') value = '';
    else if (pick.action === 'browse') {
      const uris = await vscode.window.showOpenDialog({ canSelectMany: false, title: 'Python interpreter' });
      value = uris?.[0]?.fsPath;
    }
    if (value === undefined) return;
    const target = vscode.workspace.workspaceFolders ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
    await vscode.workspace.getConfiguration(SECTION).update('pythonPath', value || undefined, target);
    await this.check(); // the configuration listener checks too; this one makes the result visible at once
  }

  private async install(interpreter: Interpreter, hasTorch: boolean): Promise<void> {
    if (!hasTorch) {
      const go = 'Install Anyway';
      const choice = await vscode.window.showWarningMessage(
        `torch is not installed in ${interpreter.path}. Installing crashguard[train] would bring the default torch ` +
        'build of your package index (on Linux a CUDA build of several GB). Install the torch build you want first ' +
        '(see PyTorch\'s install selector), then come back.', { modal: true }, go);
      if (choice !== go) return;
    }
    const argv = this.installCommand(interpreter.path);
    this.deps.log.info(`installing: ${argv.join(' ')}`);
    const ok = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, cancellable: true,
      title: `Crash Guard: installing crashguard[train] into ${interpreter.path}` }, (progress, token) =>
      new Promise<boolean>((resolve) => {
        const [program = 'python3', ...args] = argv;
        const child = spawn(program, args, { cwd: path.dirname(this.deps.probeScript), stdio: ['ignore', 'pipe', 'pipe'] });
        const onLine = (chunk: Buffer) => {
          for (const line of chunk.toString().split('\n').filter(Boolean)) {
            this.deps.log.info(`pip: ${line}`);
            if (/^(Collecting|Installing|Successfully)/.test(line)) progress.report({ message: line.slice(0, 80) });
          }
        };
        child.stdout.on('data', onLine);
        child.stderr.on('data', onLine);
        token.onCancellationRequested(() => child.kill('SIGTERM'));
        child.on('error', (e) => {
          this.deps.log.error(`pip: ${String(e)}`);
          resolve(false);
        });
        child.on('close', (code) => resolve(code === 0));
      }));
    await this.check();
    if (ok && this.state?.kind === 'ready') {
      void vscode.window.showInformationMessage(`Crash Guard training is set up in ${interpreter.path}.`);
    } else {
      void vscode.window.showErrorMessage('Crash Guard: installing crashguard[train] did not finish; see the log.', 'Show Logs')
        .then((c) => c && void vscode.commands.executeCommand('crashGuard.showLogs'));
    }
  }

  dispose(): void {
    this.item.dispose();
    this.language.dispose();
    this.emitter.dispose();
  }
}
