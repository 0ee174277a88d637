// The ms-python.python extension's active interpreter (when that extension is installed), and its changes.
import * as vscode from 'vscode';

interface PythonApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { path: string } | undefined;
    resolveEnvironment(env: { path: string } | string): Promise<{ executable: { uri?: vscode.Uri } } | undefined>;
    onDidChangeActiveEnvironmentPath?: vscode.Event<unknown>;
  };
  settings?: { getExecutionDetails(resource?: vscode.Uri): { execCommand: string[] | undefined } };
}

const PYTHON_EXTENSION = 'ms-python.python';

async function api(): Promise<PythonApi | undefined> {
  const ext = vscode.extensions.getExtension<PythonApi>(PYTHON_EXTENSION);
  if (!ext) return undefined;
  return ext.isActive ? ext.exports : ext.activate();
}

export async function activeInterpreter(resource: vscode.Uri | undefined): Promise<string | undefined> {
  const python = await api();
  if (!python) return undefined;
  if (python.environments) {
    const active = python.environments.getActiveEnvironmentPath(resource);
    if (active) {
      const resolved = await python.environments.resolveEnvironment(active);
      const exe = resolved?.executable.uri?.fsPath;
      if (exe) return exe;
    }
  }
  return python.settings?.getExecutionDetails(resource).execCommand?.[0];
}

export function hasPythonExtension(): boolean {
  return vscode.extensions.getExtension(PYTHON_EXTENSION) !== undefined;
}

/** Calls `listener` when the Python extension's active interpreter changes (no-op without it). */
export async function onInterpreterChange(listener: () => void): Promise<vscode.Disposable | undefined> {
  const python = await api().catch(() => undefined);
  return python?.environments?.onDidChangeActiveEnvironmentPath?.(listener);
}
