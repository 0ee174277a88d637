// The ms-python.python extension, only as far as the user wants it: its interpreter is read when that extension
// is already active (Crash Guard never activates it on its own), and it is activated only when the user asks to
// pick an interpreter through it.
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

function activeApi(): PythonApi | undefined {
  const ext = vscode.extensions.getExtension<PythonApi>(PYTHON_EXTENSION);
  return ext?.isActive ? ext.exports : undefined;
}

/** The Python extension's interpreter for `resource`, when that extension is already active; else undefined. */
export async function activeInterpreter(resource: vscode.Uri | undefined): Promise<string | undefined> {
  const python = activeApi();
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

/** The user chose "pick with the Python extension": activate it and open its interpreter picker. */
export async function pickWithPythonExtension(resource: vscode.Uri | undefined): Promise<string | undefined> {
  const ext = vscode.extensions.getExtension<PythonApi>(PYTHON_EXTENSION);
  if (!ext) return undefined;
  if (!ext.isActive) await ext.activate();
  await vscode.commands.executeCommand('python.setInterpreter');
  return activeInterpreter(resource);
}

/** Calls `listener` when the (already active) Python extension's interpreter changes. */
export function onInterpreterChange(listener: () => void): vscode.Disposable | undefined {
  return activeApi()?.environments?.onDidChangeActiveEnvironmentPath?.(listener);
}
