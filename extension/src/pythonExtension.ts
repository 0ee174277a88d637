// The Python extension (ms-python.python, its published API @vscode/python-extension) and the Python Environments
// extension (ms-python.vscode-python-envs, @vscode/python-environments) as far as the user wants them: their
// interpreter is read while they are active (Crash Guard never activates them on its own), a watch notices when
// one activates later or its interpreter changes, and the Python extension is activated only when the user asks to
// pick an interpreter through it.
import type { PythonEnvironmentApi } from '@vscode/python-environments';
import { PythonExtension, PVSC_EXTENSION_ID } from '@vscode/python-extension';
import * as vscode from 'vscode';

const ENVIRONMENTS_EXTENSION = 'ms-python.vscode-python-envs';
/** How often the watch looks whether an installed, inactive extension has activated (a property read). */
const ACTIVATION_POLL_MS = 2000;

function activeExports(id: string): unknown {
  const ext = vscode.extensions.getExtension(id);
  return ext?.isActive ? ext.exports : undefined;
}

const pythonApi = (): PythonExtension | undefined => activeExports(PVSC_EXTENSION_ID) as PythonExtension | undefined;
/** The Python Environments API; absent from its exports until that extension has finished activating. */
const environmentsApi = (): PythonEnvironmentApi | undefined => {
  const api = activeExports(ENVIRONMENTS_EXTENSION) as Partial<PythonEnvironmentApi> | undefined;
  return typeof api?.getEnvironment === 'function' ? api as PythonEnvironmentApi : undefined;
};

/** The interpreter for `resource` of the Python Environments extension, else of the Python extension, when one
 *  of them is already active; else undefined. */
export async function activeInterpreter(resource: vscode.Uri | undefined): Promise<string | undefined> {
  const envs = environmentsApi();
  if (envs) {
    const env = await envs.getEnvironment(resource);
    const exe = env?.execInfo.run.executable;
    if (exe) return exe;
  }
  const python = pythonApi();
  if (!python) return undefined;
  const activePath = python.environments.getActiveEnvironmentPath(resource);
  const resolved = await python.environments.resolveEnvironment(activePath);
  return resolved?.executable.uri?.fsPath ?? activePath.path;
}

/** Every interpreter the active Python extensions know (for the monitor's pick); none when neither is active. */
export async function knownInterpreters(): Promise<string[]> {
  const out: string[] = [];
  const envs = environmentsApi();
  if (envs) {
    for (const env of await envs.getEnvironments('all').catch(() => [])) out.push(env.execInfo.run.executable);
  }
  for (const env of pythonApi()?.environments.known ?? []) {
    const exe = env.executable.uri?.fsPath;
    if (exe) out.push(exe);
  }
  return out;
}

export function hasPythonExtension(): boolean {
  return vscode.extensions.getExtension(PVSC_EXTENSION_ID) !== undefined;
}

/** The user chose "pick with the Python extension": activate it and open its interpreter picker. */
export async function pickWithPythonExtension(resource: vscode.Uri | undefined): Promise<string | undefined> {
  if (!hasPythonExtension()) return undefined;
  await PythonExtension.api(); // activates it: the user asked for its picker
  await vscode.commands.executeCommand('python.setInterpreter');
  return activeInterpreter(resource);
}

/**
 * Fires when the interpreter the Python extensions would give may have changed: one of them activated after Crash
 * Guard did (the usual case: it activates when a Python file opens), was installed or enabled, or reports a new
 * active interpreter. Activation has no event of its own, so an installed, inactive extension is looked at every
 * ACTIVATION_POLL_MS until it is active.
 */
export class PythonExtensionWatch implements vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<string>();
  readonly onDidChange = this.emitter.event;
  private readonly subscribed = new Map<string, vscode.Disposable | undefined>();
  private poll: NodeJS.Timeout | undefined;
  private readonly installs: vscode.Disposable;

  constructor() {
    this.installs = vscode.extensions.onDidChange(() => this.look());
    this.look(false); // already active at Crash Guard's activation: discovery reads it anyway
  }

  private look(announce = true): void {
    let waiting = false;
    for (const id of [PVSC_EXTENSION_ID, ENVIRONMENTS_EXTENSION]) {
      const ext = vscode.extensions.getExtension(id);
      if (!ext) {
        this.subscribed.get(id)?.dispose();
        this.subscribed.delete(id);
        continue;
      }
      if (this.subscribed.has(id)) continue;
      if (!ext.isActive) {
        waiting = true;
        continue;
      }
      this.subscribed.set(id, this.subscribe(id));
      if (announce) this.emitter.fire(`${id} is active`);
    }
    if (waiting && !this.poll) this.poll = setInterval(() => this.look(), ACTIVATION_POLL_MS);
    if (!waiting && this.poll) {
      clearInterval(this.poll);
      this.poll = undefined;
    }
  }

  private subscribe(id: string): vscode.Disposable | undefined {
    if (id === PVSC_EXTENSION_ID) {
      return pythonApi()?.environments.onDidChangeActiveEnvironmentPath(() => this.emitter.fire(`${id}: interpreter changed`));
    }
    return environmentsApi()?.onDidChangeEnvironment(() => this.emitter.fire(`${id}: environment changed`));
  }

  dispose(): void {
    if (this.poll) clearInterval(this.poll);
    this.installs.dispose();
    for (const d of this.subscribed.values()) d?.dispose();
    this.emitter.dispose();
  }
}
