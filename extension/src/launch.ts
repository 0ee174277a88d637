// F5 "Safe Training (Low Memory)": a debug configuration for the Python debugger (debugpy), offered only in
// folders that train with Crash Guard (folders.ts) — as the initial launch.json and in the F5 list — and added
// to any folder on request ("Add Safe Training to this Folder"). The run registers where the sidecar looks.
import * as vscode from 'vscode';
import { SAFE_TRAINING_DEBUG_ARGS } from './cli';
import { DEFAULTS } from './settings';

export const SAFE_TRAINING_NAME = 'Safe Training (Low Memory)';

export function safeTrainingConfiguration(): vscode.DebugConfiguration {
  return {
    name: SAFE_TRAINING_NAME,
    type: 'debugpy',
    request: 'launch',
    module: 'crashguard',
    args: [...SAFE_TRAINING_DEBUG_ARGS],
    cwd: '${workspaceFolder}',
    console: 'integratedTerminal',
    justMyCode: true,
  };
}

export interface LaunchDeps {
  isTrainingFolder(folder: vscode.WorkspaceFolder): boolean;
  /** The folder's runs directory setting (as written, relative to the folder). */
  runsDirectorySetting(folder: vscode.WorkspaceFolder | undefined): string;
  /** crashGuard.pythonPath when set: the training environment debugpy should use. */
  trainingPython(): string | undefined;
}

export class SafeTrainingDebugProvider implements vscode.DebugConfigurationProvider {
  constructor(private readonly deps: LaunchDeps) {}

  provideDebugConfigurations(folder: vscode.WorkspaceFolder | undefined): vscode.DebugConfiguration[] {
    return folder && this.deps.isTrainingFolder(folder) ? [safeTrainingConfiguration()] : [];
  }

  /** A crashguard training run registers where the sidecar looks, with the training environment. */
  resolveDebugConfiguration(folder: vscode.WorkspaceFolder | undefined,
    config: vscode.DebugConfiguration): vscode.DebugConfiguration {
    const args = config.args as unknown;
    if (config.module !== 'crashguard' || !Array.isArray(args) || args[0] !== 'train') return config;
    const out = { ...config };
    const runsDir = this.deps.runsDirectorySetting(folder);
    if (!args.includes('--runs-dir') && runsDir !== DEFAULTS.runsDirectory) out.args = [...(args as string[]), '--runs-dir', runsDir];
    const python = this.deps.trainingPython();
    if (python && out.python === undefined) out.python = python;
    return out;
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
