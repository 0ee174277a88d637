// Which Python runs what. The monitor (the bundled sidecar) runs on any Python >= 3.10; training (tasks, F5,
// resume, set-up) needs the environment where the user installed crashguard[train]. Discovery is one function for
// each, behind a probe that imports nothing from the workspace (`python -I -S probe.py`, cwd outside any folder).
// -I keeps the working folder, the script's folder, PYTHON* variables and the user site-packages off the path; -S
// keeps `site` from running at start-up, which would execute the `import` lines of every .pth file in the
// interpreter's site-packages — a workspace's own .venv is the workspace's code (issue 21). Neither the probe nor
// the bundled monitor needs anything from site-packages to start.
// Node only (no 'vscode' import): the Python extension lookup is passed in.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export type InterpreterSource = 'setting crashGuard.pythonPath' | 'environment CRASH_GUARD_PYTHON' |
  'Python extension' | 'PATH' | typeof MONITOR_CHOICE_SOURCE;
/** An interpreter the user picked with "Select Python for the Memory Monitor" (the monitor only, never training). */
export const MONITOR_CHOICE_SOURCE = 'chosen for the memory monitor';

export interface Interpreter {
  path: string;
  source: InterpreterSource;
}

/**
 * Where an interpreter imports a package from when the working folder is not on its path (bundled/tool/probe.py):
 * what `python -I` finds (its own site-packages: a virtual environment, conda, a system or an editable install),
 * else an absolute entry of $PYTHONPATH, else the user's site-packages; null: nowhere.
 */
export type Found = 'isolated' | 'pythonPath' | 'userSite' | null;
export const FOUND_VALUES: readonly Found[] = ['isolated', 'pythonPath', 'userSite', null];
export const TRAINING_PACKAGES = ['crashguard', 'torch', 'monai'] as const;
export type TrainingPackage = typeof TRAINING_PACKAGES[number];

/** What bundled/tool/probe.py says about an interpreter. */
export interface PythonInfo {
  executable: string;
  version: string;
  prefix: string;
  virtualEnv: boolean;
  /** The installed crashguard distribution's version, or null. */
  crashguard: string | null;
  /** Where each package training needs is found (cli.ts's crashguardLaunch picks how to start crashguard by it). */
  found: Record<TrainingPackage, Found>;
  /** The `crashguard` console script of the installation found, or null. */
  crashguardScript: string | null;
  pip: boolean;
}

export type Probe = { ok: true; info: PythonInfo } | { ok: false; reason: string };
export type Prober = (python: string) => Promise<Probe>;

export const MINIMUM_SIDECAR_PYTHON: readonly [number, number] = [3, 10];
/** Tried in this order after the configured ones, for the monitor only. */
export const PATH_PYTHONS = ['python3', 'python3.13', 'python3.12', 'python3.11', 'python3.10', 'python'];

export interface DiscoveryInputs {
  setting: string;
  env: NodeJS.ProcessEnv;
  workspaceFolder: string | undefined;
  /** The Python Environments' or the Python extension's interpreter, only when already active (never activates it). */
  pythonExtension: () => Promise<string | undefined>;
  /** The monitor's own interpreter, picked by the user (Select Python for the Memory Monitor); tried first. */
  monitorChoice?: string;
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

/** The configured interpreters, most specific first: our setting, $CRASH_GUARD_PYTHON, the Python extension's. */
export async function configuredInterpreters(inputs: DiscoveryInputs): Promise<Interpreter[]> {
  const out: Interpreter[] = [];
  if (inputs.setting.trim()) {
    out.push({ path: expandPath(inputs.setting, inputs.workspaceFolder), source: 'setting crashGuard.pythonPath' });
  }
  const fromEnv = inputs.env.CRASH_GUARD_PYTHON?.trim();
  if (fromEnv) out.push({ path: expandPath(fromEnv, inputs.workspaceFolder), source: 'environment CRASH_GUARD_PYTHON' });
  let fromExtension: string | undefined;
  try {
    fromExtension = await inputs.pythonExtension();
  } catch {
    fromExtension = undefined; // a broken Python extension must not keep the gauge from starting
  }
  if (fromExtension) out.push({ path: fromExtension, source: 'Python extension' });
  return out;
}

/** The training environment: the first configured interpreter, else python3 from PATH. */
export async function resolveTrainingInterpreter(inputs: DiscoveryInputs): Promise<Interpreter> {
  return (await configuredInterpreters(inputs))[0] ?? { path: 'python3', source: 'PATH' };
}

export function versionAtLeast(version: string, minimum: readonly [number, number]): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > minimum[0] || (major === minimum[0] && minor >= minimum[1]);
}

export interface SidecarChoice {
  interpreter: Interpreter;
  info: PythonInfo;
  /** Interpreters tried before it, and why each was passed over (logged). */
  passedOver: string[];
}

/** The monitor's interpreter: the first that is Python >= 3.10 of the user's pick for the monitor, the configured
 *  ones, then PATH's. */
export async function chooseSidecarInterpreter(inputs: DiscoveryInputs, probe: Prober): Promise<SidecarChoice | { passedOver: string[] }> {
  const chosen: Interpreter[] = inputs.monitorChoice ? [{ path: inputs.monitorChoice, source: MONITOR_CHOICE_SOURCE }] : [];
  const candidates = [...chosen, ...await configuredInterpreters(inputs),
    ...PATH_PYTHONS.map((p): Interpreter => ({ path: p, source: 'PATH' }))];
  const passedOver: string[] = [];
  const seen = new Set<string>();
  for (const interpreter of candidates) {
    if (seen.has(interpreter.path)) continue;
    seen.add(interpreter.path);
    const result = await probe(interpreter.path);
    if (!result.ok) {
      if (interpreter.source !== 'PATH') passedOver.push(`${interpreter.path} (${interpreter.source}): ${result.reason}`);
      continue;
    }
    if (!versionAtLeast(result.info.version, MINIMUM_SIDECAR_PYTHON)) {
      passedOver.push(`${interpreter.path} (${interpreter.source}): Python ${result.info.version} is older than ` +
        MINIMUM_SIDECAR_PYTHON.join('.'));
      continue;
    }
    return { interpreter, info: result.info, passedOver };
  }
  return { passedOver };
}

const INFO_KEYS: readonly (keyof PythonInfo)[] = ['executable', 'version', 'prefix', 'virtualEnv', 'crashguard',
  'found', 'crashguardScript', 'pip'];

export function parseProbe(stdout: string): PythonInfo | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout.trim().split('\n').pop() ?? '');
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as Record<string, unknown>;
  if (!INFO_KEYS.every((k) => k in o)) return undefined;
  if (typeof o.executable !== 'string' || typeof o.version !== 'string' || typeof o.prefix !== 'string') return undefined;
  if (o.crashguard !== null && typeof o.crashguard !== 'string') return undefined;
  if (o.crashguardScript !== null && typeof o.crashguardScript !== 'string') return undefined;
  if (typeof o.virtualEnv !== 'boolean' || typeof o.pip !== 'boolean') return undefined;
  const found = o.found as Record<string, unknown> | null;
  if (typeof found !== 'object' || found === null ||
      !TRAINING_PACKAGES.every((k) => (FOUND_VALUES as readonly unknown[]).includes(found[k]))) return undefined;
  return o as unknown as PythonInfo;
}

/** The interpreter options of everything the extension runs from its own files (the probe, the monitor): -I and -S
 *  (see the top of this file). */
export const OWN_SCRIPT_OPTIONS: readonly string[] = ['-I', '-S'];

/** The probe's argv after the interpreter. */
export function probeArgs(probeScript: string): string[] {
  return [...OWN_SCRIPT_OPTIONS, probeScript];
}

/**
 * Runs `<python> -I -S <probeScript>` (execFile, no shell) in `cwd`, a folder no workspace controls: nothing of the
 * current directory, the script's folder, user site-packages, PYTHON* variables or any .pth file runs or is imported.
 */
export function probePython(python: string, probeScript: string, cwd: string, timeoutMs = 20_000): Promise<Probe> {
  return new Promise((resolve) => {
    execFile(python, probeArgs(probeScript), { cwd, timeout: timeoutMs, windowsHide: true },
      (error, stdout, stderr) => {
        if (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') return resolve({ ok: false, reason: `interpreter not found: ${python}` });
          if (code === 'EACCES') return resolve({ ok: false, reason: `interpreter not executable: ${python}` });
          const last = stderr.trim().split('\n').pop();
          return resolve({ ok: false, reason: last || error.message });
        }
        const info = parseProbe(stdout);
        resolve(info ? { ok: true, info } : { ok: false, reason: `${python} did not describe itself (not a Python?)` });
      });
  });
}

export type TrainingState =
  | { kind: 'ready'; interpreter: Interpreter; info: PythonInfo }
  | { kind: 'missing'; interpreter: Interpreter; info: PythonInfo; missing: string[] }
  | { kind: 'unusable'; interpreter: Interpreter; reason: string };

/** Whether `interpreter` can run Crash Guard's training (crashguard with torch and MONAI). */
export function trainingState(interpreter: Interpreter, probe: Probe): TrainingState {
  if (!probe.ok) return { kind: 'unusable', interpreter, reason: probe.reason };
  const missing: string[] = [];
  for (const name of TRAINING_PACKAGES) if (probe.info.found[name] === null) missing.push(name);
  return missing.length === 0 ? { kind: 'ready', interpreter, info: probe.info }
    : { kind: 'missing', interpreter, info: probe.info, missing };
}

/** The memory monitor's argv: the bundled launcher, isolated from the workspace, the user's site-packages and the
 *  interpreter's site hooks (-I -S). `development` (an extension host started for development): the launcher runs
 *  the monitor from the source checkout it sits in, if it sits in one (bundled/tool/sidecar.py); a packaged one
 *  ignores it. */
export function sidecarArgs(launcher: string, development = false): string[] {
  return development ? [...OWN_SCRIPT_OPTIONS, launcher, '--development'] : [...OWN_SCRIPT_OPTIONS, launcher];
}

/** Interpreter names worth looking for in a folder, newest first. */
const PYTHON_NAMES = ['python3.14', 'python3.13', 'python3.12', 'python3.11', 'python3.10', 'python3', 'python'];
/** At most this many interpreters are probed for the pick (each probe starts one Python). */
export const MAX_FOUND = 40;

export interface SearchPlaces {
  env: NodeJS.ProcessEnv;
  home: string | undefined;
  /** Interpreters other tools know (the Python extension's environments, when it is active). */
  extra: readonly string[];
}

/** Folders where a Python may live beyond PATH: system and package-manager folders, pyenv, conda, uv. Globs (one
 *  `*` as a whole path part) are expanded by findInterpreters. */
export function searchFolders(places: SearchPlaces): string[] {
  const home = places.home;
  const pathDirs = (places.env.PATH ?? '').split(path.delimiter).filter((d) => path.isAbsolute(d));
  const fixed = ['/usr/bin', '/usr/local/bin', '/opt/homebrew/bin', '/opt/local/bin', '/opt/conda/bin',
    '/Library/Frameworks/Python.framework/Versions/*/bin'];
  const inHome = home ? ['.local/bin', '.pyenv/versions/*/bin', '.local/share/uv/python/*/bin', '.conda/envs/*/bin',
    ...['miniconda3', 'anaconda3', 'miniforge3', 'mambaforge'].flatMap((c) => [`${c}/bin`, `${c}/envs/*/bin`])]
    .map((d) => path.join(home, d)) : [];
  return [...new Set([...pathDirs, ...fixed, ...inHome])];
}

function expandGlob(folder: string): string[] {
  const parts = folder.split(path.sep);
  const star = parts.indexOf('*');
  if (star < 0) return [folder];
  const base = parts.slice(0, star).join(path.sep) || path.sep;
  let names: string[];
  try {
    names = fs.readdirSync(base).sort().reverse();
  } catch {
    return [];
  }
  return names.flatMap((n) => expandGlob([base, n, ...parts.slice(star + 1)].join(path.sep)));
}

function isExecutableFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Interpreters present on this machine (existing executable files, one per real file), for the monitor's pick:
 *  `extra` first, then each folder of searchFolders, newest name first. At most MAX_FOUND. */
export function findInterpreters(places: SearchPlaces): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (file: string): void => {
    if (out.length >= MAX_FOUND || !isExecutableFile(file)) return;
    let real: string;
    try {
      real = fs.realpathSync(file);
    } catch {
      return;
    }
    if (seen.has(real)) return;
    seen.add(real);
    out.push(file);
  };
  for (const file of places.extra) add(file);
  for (const folder of searchFolders(places).flatMap(expandGlob)) for (const name of PYTHON_NAMES) add(path.join(folder, name));
  return out;
}

export interface FoundPython {
  path: string;
  info: PythonInfo;
}

/** The probed interpreters that can run the monitor (>= 3.10), newest version first; the others as reasons. */
export function usableForMonitor(probed: readonly { path: string; probe: Probe }[]): { usable: FoundPython[]; passedOver: string[] } {
  const usable: FoundPython[] = [];
  const passedOver: string[] = [];
  for (const { path: file, probe } of probed) {
    if (!probe.ok) passedOver.push(`${file}: ${probe.reason}`);
    else if (!versionAtLeast(probe.info.version, MINIMUM_SIDECAR_PYTHON)) {
      passedOver.push(`${file}: Python ${probe.info.version} is older than ${MINIMUM_SIDECAR_PYTHON.join('.')}`);
    } else usable.push({ path: file, info: probe.info });
  }
  const key = (v: string): number[] => v.split('.').map((x) => Number.parseInt(x, 10) || 0);
  usable.sort((a, b) => {
    const [x, y] = [key(a.info.version), key(b.info.version)];
    for (let i = 0; i < Math.max(x.length, y.length); i++) if ((y[i] ?? 0) !== (x[i] ?? 0)) return (y[i] ?? 0) - (x[i] ?? 0);
    return 0;
  });
  return { usable, passedOver };
}
