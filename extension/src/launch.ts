// F5 "Safe Training (Low Memory)": a debug configuration for the Python debugger (debugpy), offered only in
// folders that train with Crash Guard (folders.ts) — as the initial launch.json and in the F5 list — and added
// to any folder on request ("Add Safe Training to this Folder"). At F5 it is resolved to the training
// environment's console script, isolated from the folder (debugConfig.ts); the run registers where the monitor looks.
import * as vscode from 'vscode';
import { resolveSafeTraining, safeTrainingConfiguration, startsCrashGuard } from './debugConfig';
import type { LaunchChoice } from './isolation';
import type { Log } from './logger';
import { DEFAULTS } from './settings';

export interface LaunchDeps {
  log: Log;
  isTrainingFolder(folder: vscode.WorkspaceFolder): boolean;
  /** The folder's runs directory setting (as written, relative to the folder). */
  runsDirectorySetting(folder: vscode.WorkspaceFolder | undefined): string;
  /** How crashguard starts in the training environment, or in `python` when the configuration names one. */
  launch(python?: string): Promise<LaunchChoice>;
}

export class SafeTrainingDebugProvider implements vscode.DebugConfigurationProvider {
  constructor(private readonly deps: LaunchDeps) {}

  provideDebugConfigurations(folder: vscode.WorkspaceFolder | undefined): vscode.DebugConfiguration[] {
    return folder && this.deps.isTrainingFolder(folder) ? [safeTrainingConfiguration()] : [];
  }

  /** A configuration that starts crashguard runs its console script, isolated, in the training environment. */
  async resolveDebugConfiguration(folder: vscode.WorkspaceFolder | undefined,
    config: vscode.DebugConfiguration): Promise<vscode.DebugConfiguration | undefined> {
    if (!startsCrashGuard(config)) return config;
    if (!vscode.workspace.isTrusted) return undefined; // nothing of the folder's runs in Restricted Mode
    const python = typeof config.python === 'string' && config.python ? config.python : undefined;
    const choice = await this.deps.launch(python);
    const resolved = choice.ok
      ? resolveSafeTraining(config, choice.launch, this.deps.runsDirectorySetting(folder),
        DEFAULTS.runsDirectory, process.env)
      : choice;
    if (!resolved.ok) {
      this.deps.log.warn(`F5 ${config.name}: ${resolved.why}`);
      void vscode.window.showErrorMessage(`Crash Guard: cannot start ${config.name}: ${resolved.why}.`,
        'Set Up Crash Guard Training…').then((c) => c && void vscode.commands.executeCommand('crashGuard.setUpTraining'));
      return undefined; // cancels this start
    }
    this.deps.log.info(`F5 ${config.name}: ${String(resolved.config.python)} ${(resolved.config.pythonArgs as string[]).join(' ')} ` +
      `${String(resolved.config.program)} (${choice.ok ? choice.launch.how : ''})`);
    return resolved.config;
  }
}

/** Whether an installed extension (the Python Debugger) contributes the debugpy debug type. */
function debugpyInstalled(): boolean {
  return vscode.extensions.all.some((e) => {
    const debuggers = (e.packageJSON as { contributes?: { debuggers?: { type?: string }[] } }).contributes?.debuggers;
    return debuggers?.some((d) => d.type === 'debugpy') ?? false;
  });
}

export function registerLaunch(context: vscode.ExtensionContext, deps: LaunchDeps): void {
  const provider = new SafeTrainingDebugProvider(deps);
  let registered = false;
  const register = () => {
    // A provider for a type no debugger contributes would show as "undefined" in every F5 list.
    if (registered || !debugpyInstalled()) return;
    registered = true;
    for (const trigger of [vscode.DebugConfigurationProviderTriggerKind.Initial, vscode.DebugConfigurationProviderTriggerKind.Dynamic]) {
      context.subscriptions.push(vscode.debug.registerDebugConfigurationProvider('debugpy', provider, trigger));
    }
  };
  register();
  context.subscriptions.push(vscode.extensions.onDidChange(register));
}
