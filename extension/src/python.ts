// Interpreter discovery behind one function: our setting → $CRASH_GUARD_PYTHON → the Python extension's active
// interpreter → python3. Node only (no 'vscode' import): the Python extension lookup is passed in.
import { execFile } from 'node:child_process';
import * as path from 'node:path';

export type InterpreterSource = 'setting crashGuard.pythonPath' | 'environment CRASH_GUARD_PYTHON' |
  'Python extension' | 'default python3';

export interface Interpreter {
  path: string;
  source: InterpreterSource;
}

export interface DiscoveryInputs {
  setting: string;
  env: NodeJS.ProcessEnv;
  workspaceFolder: string | undefined;
  /** The ms-python.python active interpreter, or undefined when that extension is absent or has none. */
  pythonExtension: () => Promise<string | undefined>;
}

/** Expands ${workspaceFolder} and ~, and resolves a relative path against the workspace. */
export function expandPath(value: string, workspaceFolder: string | undefined, home = process.env.HOME): string {
  let out = value.trim();
  if (workspaceFolder) out = out.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
  if (home && (out === '~' || out.startsWith('~/'))) out = home + out.slice(1);
  // A bare command name ("python3") is looked up on PATH; only paths with a separator are resolved.
  if (workspaceFolder && !path.isAbsolute(out) && /[\\/]/.test(out)) out = path.resolve(workspaceFolder, out);
  return out;
}

export async function resolveInterpreter(inputs: DiscoveryInputs): Promise<Interpreter> {
  if (inputs.setting.trim()) {
    return { path: expandPath(inputs.setting, inputs.workspaceFolder), source: 'setting crashGuard.pythonPath' };
  }
  const fromEnv = inputs.env.CRASH_GUARD_PYTHON?.trim();
  if (fromEnv) return { path: expandPath(fromEnv, inputs.workspaceFolder), source: 'environment CRASH_GUARD_PYTHON' };
  let fromExtension: string | undefined;
  try {
    fromExtension = await inputs.pythonExtension();
  } catch {
    fromExtension = undefined; // a broken Python extension must not keep the gauge from starting
  }
  if (fromExtension) return { path: fromExtension, source: 'Python extension' };
  return { path: 'python3', source: 'default python3' };
}

export interface BackendCheck {
  ok: boolean;
  /** Why not, in words (stderr's last line, or the spawn error). */
  reason?: string;
}

/** Runs `<python> -c "import python_backend"` (execFile, no shell). */
export function checkBackend(python: string, cwd: string | undefined, timeoutMs = 20_000): Promise<BackendCheck> {
  return new Promise((resolve) => {
    execFile(python, ['-c', 'import python_backend'], { cwd, timeout: timeoutMs, windowsHide: true },
      (error, _stdout, stderr) => {
        if (!error) return resolve({ ok: true });
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return resolve({ ok: false, reason: `interpreter not found: ${python}` });
        if (code === 'EACCES') return resolve({ ok: false, reason: `interpreter not executable: ${python}` });
        const last = stderr.trim().split('\n').pop();
        resolve({ ok: false, reason: last || error.message });
      });
  });
}
