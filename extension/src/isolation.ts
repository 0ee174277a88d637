// How the extension starts crashguard in the user's training environment — tasks, the palette's commands, F5 and
// Resume — so that nothing is imported from the folder it runs in. `python -m crashguard` puts its working folder
// (the workspace folder) first on sys.path: a folder with a `crashguard/` or `python_backend/` package of its own
// would run instead of Crash Guard. Pure: no 'vscode' import.
//
// Per interpreter, from where its probe (bundled/tool/probe.py, itself run with -I) found crashguard, torch and MONAI:
// 1. all where `python -I` finds them (the interpreter's own site-packages: a virtual environment, conda, a system
//    or an editable install): `python -I -m crashguard`. -I leaves out the working folder, PYTHONPATH and the
//    user's site-packages; any Python.
// 2. else (a `pip install --user`, or a package only on PYTHONPATH), Python >= 3.11: `python -P -m crashguard`.
//    -P leaves out only the working folder; the empty and relative entries of PYTHONPATH, which name the working
//    folder too, are taken out of the child's environment.
// 3. else, Python 3.10 (no -P): the installation's `crashguard` console script run by the interpreter: sys.path[0]
//    is the script's own folder (e.g. ~/.local/bin), never the working folder; PYTHONPATH cleaned likewise.
// F5 always runs the console script (debugpy's `program`) with the pythonArgs of the rule (-I, -P or none): for a
// `module`, debugpy releases before the fix of microsoft/debugpy#1916 put the working folder first whatever
// pythonArgs say; for a `program` they put the program's own folder.
import * as path from 'node:path';
import { TRAINING_PACKAGES, versionAtLeast, type PythonInfo } from './python';

export const MODULE = 'crashguard';
/** The module name of Crash Guard before 0.1.0 (`python -m python_backend`), found in runs recorded by it. */
export const OLD_MODULE = 'python_backend';

export interface CrashguardLaunch {
  /** The interpreter, absolute (as the probe reported it). */
  python: string;
  /** What follows the interpreter, before crashguard's own arguments. */
  prefix: readonly string[];
  /** Variables to set in the child's environment (PYTHONPATH without the working folder); empty with -I. */
  env: Readonly<Record<string, string>>;
  /** F5: the console script as debugpy's `program` with these pythonArgs; undefined without a console script. */
  debug: { program: string; pythonArgs: readonly string[] } | undefined;
  /** Which rule applied, for the log. */
  how: string;
}

export type LaunchChoice = { ok: true; launch: CrashguardLaunch } | { ok: false; why: string };

/** PYTHONPATH with only its absolute entries (an empty or relative one names the working folder); undefined when
 *  it needs no change. */
export function cleanPythonPath(value: string | undefined, delimiter = path.delimiter): string | undefined {
  if (value === undefined) return undefined;
  const kept = value.split(delimiter).filter((entry) => entry !== '' && path.isAbsolute(entry));
  const cleaned = kept.join(delimiter);
  return cleaned === value ? undefined : cleaned;
}

/** How `info`'s interpreter starts crashguard without importing from its working folder (see the top). */
export function crashguardLaunch(info: PythonInfo, env: NodeJS.ProcessEnv): LaunchChoice {
  const where = info.found.crashguard;
  if (where === null) {
    return { ok: false, why: `crashguard is not installed in ${info.executable} (Crash Guard: Set Up Crash Guard Training…)` };
  }
  const script = info.crashguardScript;
  if (TRAINING_PACKAGES.every((name) => info.found[name] === null || info.found[name] === 'isolated')) {
    return { ok: true, launch: { python: info.executable, prefix: ['-I', '-m', MODULE], env: {},
      debug: script ? { program: script, pythonArgs: ['-I'] } : undefined,
      how: '-I -m crashguard (installed in the environment itself)' } };
  }
  const pythonPath = cleanPythonPath(env.PYTHONPATH);
  const cleaned: Record<string, string> = pythonPath === undefined ? {} : { PYTHONPATH: pythonPath };
  const outside = TRAINING_PACKAGES.filter((name) => info.found[name] !== null && info.found[name] !== 'isolated')
    .map((name) => `${name} from ${info.found[name] === 'userSite' ? 'the user site-packages' : 'PYTHONPATH'}`).join(', ');
  if (versionAtLeast(info.version, [3, 11])) {
    return { ok: true, launch: { python: info.executable, prefix: ['-P', '-m', MODULE], env: cleaned,
      debug: script ? { program: script, pythonArgs: ['-P'] } : undefined, how: `-P -m crashguard (${outside})` } };
  }
  if (!script) {
    return { ok: false, why: `${info.executable} (Python ${info.version}) finds ${outside}, and without -P (Python ` +
      '3.11+) or a crashguard console script it cannot start crashguard without the working folder on its path: ' +
      'install crashguard[train] into a virtual environment, or use Python 3.11 or newer' };
  }
  return { ok: true, launch: { python: info.executable, prefix: [script], env: cleaned,
    debug: { program: script, pythonArgs: [] }, how: `the console script ${script} (${outside}; Python ${info.version} has no -P)` } };
}

/** The process for crashguard `args` (e.g. ['train', '--config', ...]) under `launch`. */
export function crashguardProcess(launch: CrashguardLaunch, args: readonly string[]):
  { command: string; args: string[]; env: Record<string, string> } {
  return { command: launch.python, args: [...launch.prefix, ...args], env: { ...launch.env } };
}

/** How a recorded resume argv (argv[0] the interpreter) starts Crash Guard. `asIs`: isolated already, or not Crash
 *  Guard at all (the user's own script: Resume runs the user's code, as they started it). `unisolated`: the
 *  interpreter's own `-m crashguard` (or `-m python_backend`, Crash Guard before 0.1.0) without -I/-P, as Crash
 *  Guard recorded it before this release: resumed as `crashguard <args>` of that interpreter, started by the rules
 *  above. `torchrun`: torchrun's `-m crashguard` starts every rank with the working folder first on its path. */
export type RecordedLaunch =
  | { kind: 'asIs' }
  | { kind: 'unisolated'; interpreter: string; module: string; args: string[] }
  | { kind: 'torchrun'; module: string };

const PYTHON_OPTIONS_WITH_VALUE = new Set(['-W', '-X', '--check-hash-based-pycs']);
const TORCHRUN_MODULES = new Set(['torch.distributed.run', 'torch.distributed.launch']);
const isCrashGuardModule = (name: string | undefined): boolean =>
  name !== undefined && (name === MODULE || name === OLD_MODULE || name.startsWith(`${MODULE}.`) || name.startsWith(`${OLD_MODULE}.`));

export function recordedLaunch(argv: readonly string[]): RecordedLaunch {
  let isolated = false;
  let i = 1;
  for (; i < argv.length; i += 1) { // the interpreter's own options
    const arg = argv[i] ?? '';
    if (arg === '-m' || arg === '-c' || arg === '-' || !arg.startsWith('-')) break;
    if (PYTHON_OPTIONS_WITH_VALUE.has(arg)) i += 1;
    else if (!arg.startsWith('--') && /[IP]/.test(arg.slice(1))) isolated = true; // -I, -P, or grouped (-uI)
  }
  const module = argv[i] === '-m' ? argv[i + 1] : undefined;
  if (module !== undefined && isCrashGuardModule(module)) {
    return isolated ? { kind: 'asIs' } : { kind: 'unisolated', interpreter: argv[0] ?? '', module, args: argv.slice(i + 2) };
  }
  const torchrun = (module !== undefined && TORCHRUN_MODULES.has(module)) ||
    (argv[i] !== undefined && path.basename(argv[i] ?? '') === 'torchrun');
  const rest = argv.slice(i + (module !== undefined ? 2 : 1));
  if (!torchrun || rest.includes('--no-python') || rest.includes('--no_python')) return { kind: 'asIs' };
  const target = rest.find((a, k) => isCrashGuardModule(a) && rest.slice(0, k).some((f) => f === '-m' || f === '--module'));
  return target === undefined ? { kind: 'asIs' } : { kind: 'torchrun', module: target };
}
