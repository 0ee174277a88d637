// F5 "Safe Training (Low Memory)": an initial debug configuration for the Python debugger (debugpy). The run
// registers itself in the runs directory, where the sidecar finds it.
import * as vscode from 'vscode';
import { SAFE_TRAINING_DEBUG_ARGS } from './cli';
import { DEFAULTS } from './settings';

export const SAFE_TRAINING_NAME = 'Safe Training (Low Memory)';

export function safeTrainingConfiguration(): vscode.DebugConfiguration {
  return {
    name: SAFE_TRAINING_NAME,
    type: 'debugpy',
    request: 'launch',
    module: 'python_backend',
    args: [...SAFE_TRAINING_DEBUG_ARGS],
    cwd: '${workspaceFolder}',
    console: 'integratedTerminal',
    justMyCode: true,
  };
}

export class SafeTrainingDebugProvider implements vscode.DebugConfigurationProvider {
  constructor(private readonly runsDirectory: () => string) {}

  provideDebugConfigurations(): vscode.DebugConfiguration[] {
    return [safeTrainingConfiguration()];
  }

  /** Keeps a python_backend training run registering where the sidecar looks (crashGuard.runsDirectory). */
  resolveDebugConfiguration(_folder: vscode.WorkspaceFolder | undefined,
    config: vscode.DebugConfiguration): vscode.DebugConfiguration {
    const args = config.args as unknown;
    const runsDir = this.runsDirectory();
    if (config.module === 'python_backend' && Array.isArray(args) && args[0] === 'train' &&
        !args.includes('--runs-dir') && runsDir !== DEFAULTS.runsDirectory) {
      return { ...config, args: [...(args as string[]), '--runs-dir', runsDir] };
    }
    return config;
  }
}

export function registerLaunch(context: vscode.ExtensionContext, runsDirectory: () => string): void {
  const provider = new SafeTrainingDebugProvider(runsDirectory);
  // Initial: offered when launch.json is created; its resolveDebugConfiguration runs for every debugpy launch.
  context.subscriptions.push(vscode.debug.registerDebugConfigurationProvider('debugpy', provider,
    vscode.DebugConfigurationProviderTriggerKind.Initial));
}
