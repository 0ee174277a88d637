// Typed settings: package.json `contributes.configuration` → ExtensionSettings → the sidecar's SidecarSettings.
// Pure (no 'vscode' import): the reader is passed in, so the resolution is unit-tested.
// package.json is the one declaration of every setting's default and range; DEFAULTS and RANGES here, and the
// monitor's crashguard/sidecar/settings.py, are checked against it by tests (manifest.test.ts,
// tests/python/sidecar/test_settings_manifest.py) that fail when either drifts.
// One rule for "critical below warning", on both sides: refused. Here the pair keeps its previous values (at
// start, the defaults) and the user is told; the monitor rejects such an update naming the field.
import * as path from 'node:path';
import { GPU_STATUS_BAR_MODES, type GpuStatusBarMode } from './gauges';
import { CRITICAL_ACTIONS, type CriticalAction, type SidecarSettings } from './protocol';

export const SECTION = 'crashGuard';

export interface ExtensionSettings {
  /** The training environment's interpreter (tasks, F5, set-up); the monitor uses it too when it is >= 3.10. */
  pythonPath: string;
  sampleIntervalMs: number;
  ramWarningPercent: number;
  ramCriticalPercent: number;
  vramWarningPercent: number;
  vramCriticalPercent: number;
  autoCleanup: boolean;
  criticalAction: CriticalAction;
  showNotifications: boolean;
  /** Per workspace folder (resource scope), relative to it; the window-level value is the default's. */
  runsDirectory: string;
  topProcesses: number;
  hungAfterSeconds: number;
  /** Minutes between two notifications about the same resource at the same level. */
  notificationCooldownMinutes: number;
  /** Memory pressure (PSI) warning: stalled share "some" / "full" over the last pressureSeconds, %. */
  pressureSomePercent: number;
  pressureFullPercent: number;
  pressureSeconds: number;
  /** VRAM in the status bar: one item per GPU, one for the fullest, or none; `auto` = per GPU up to 2 GPUs. */
  gpuStatusBar: GpuStatusBarMode;
  /** A memory monitor of this window's own over stdio instead of the host's shared one (monitorTransport.ts). */
  monitorPerWindow: boolean;
}

export const DEFAULTS: Readonly<ExtensionSettings> = Object.freeze({
  pythonPath: '',
  sampleIntervalMs: 1000,
  ramWarningPercent: 80,
  ramCriticalPercent: 90,
  vramWarningPercent: 85,
  vramCriticalPercent: 95,
  autoCleanup: false,
  criticalAction: 'none',
  showNotifications: true,
  runsDirectory: 'runs',
  topProcesses: 5,
  hungAfterSeconds: 120,
  notificationCooldownMinutes: 10,
  pressureSomePercent: 20,
  pressureFullPercent: 10,
  pressureSeconds: 10,
  gpuStatusBar: 'auto',
  monitorPerWindow: false,
});

export interface Range {
  min: number;
  max: number;
  integer: boolean;
}

/** Each numeric setting's range (package.json's minimum, maximum and integer/number type). */
export const RANGES = {
  sampleIntervalMs: { min: 200, max: 60000, integer: true },
  ramWarningPercent: { min: 1, max: 100, integer: false },
  ramCriticalPercent: { min: 1, max: 100, integer: false },
  vramWarningPercent: { min: 1, max: 100, integer: false },
  vramCriticalPercent: { min: 1, max: 100, integer: false },
  topProcesses: { min: 0, max: 20, integer: true },
  hungAfterSeconds: { min: 1, max: 86400, integer: false },
  notificationCooldownMinutes: { min: 0, max: 1440, integer: false },
  pressureSomePercent: { min: 1, max: 100, integer: false },
  pressureFullPercent: { min: 1, max: 100, integer: false },
  pressureSeconds: { min: 2, max: 300, integer: false },
} as const satisfies Partial<Record<keyof ExtensionSettings, Range>>;

type NumericKey = keyof typeof RANGES;

/** Settings that can make Crash Guard stop, signal, write or run something: ignored from an untrusted workspace
 *  (package.json `restrictedConfigurations`, checked by a test). */
export const RESTRICTED_KEYS: readonly (keyof ExtensionSettings)[] = [
  'pythonPath', 'autoCleanup', 'criticalAction', 'runsDirectory',
];

/** Keys the sidecar understands, copied as they are (runsDirectories is derived from the folders). */
export const SIDECAR_KEYS = [
  'sampleIntervalMs', 'ramWarningPercent', 'ramCriticalPercent', 'vramWarningPercent', 'vramCriticalPercent',
  'autoCleanup', 'criticalAction', 'topProcesses', 'hungAfterSeconds', 'pressureSomePercent', 'pressureFullPercent',
  'pressureSeconds',
] as const satisfies readonly (keyof ExtensionSettings & keyof SidecarSettings)[];

export interface Resolved {
  settings: ExtensionSettings;
  /** Values that were out of range or of the wrong type, and what was used instead. */
  problems: string[];
}

type Reader = (key: keyof ExtensionSettings) => unknown;

function num(read: Reader, key: NumericKey, problems: string[]): number {
  const { min, max, integer } = RANGES[key];
  const fallback = DEFAULTS[key];
  const raw = read(key);
  if (raw === undefined || raw === null) return fallback;
  if (typeof raw !== 'number' || !Number.isFinite(raw)) {
    problems.push(`${SECTION}.${key}: ${JSON.stringify(raw)} is not a number; using ${fallback}`);
    return fallback;
  }
  let value = integer ? Math.round(raw) : raw;
  if (value < min || value > max) {
    value = Math.min(max, Math.max(min, value));
    problems.push(`${SECTION}.${key}: ${raw} is outside ${min}-${max}; using ${value}`);
  }
  return value;
}

function bool(read: Reader, key: keyof ExtensionSettings, problems: string[]): boolean {
  const raw = read(key);
  if (raw === undefined || raw === null) return DEFAULTS[key] as boolean;
  if (typeof raw !== 'boolean') {
    problems.push(`${SECTION}.${key}: ${JSON.stringify(raw)} is not true/false; using ${String(DEFAULTS[key])}`);
    return DEFAULTS[key] as boolean;
  }
  return raw;
}

function str(read: Reader, key: keyof ExtensionSettings, problems: string[]): string {
  const raw = read(key);
  if (raw === undefined || raw === null) return DEFAULTS[key] as string;
  if (typeof raw !== 'string') {
    problems.push(`${SECTION}.${key}: ${JSON.stringify(raw)} is not a string; using default`);
    return DEFAULTS[key] as string;
  }
  return raw.trim();
}

/** A warning/critical pair: refused as a whole when critical is below warning (the previous pair stays). */
function levels(read: Reader, kind: 'ram' | 'vram', previous: Readonly<ExtensionSettings>, problems: string[]):
  [warning: number, critical: number] {
  const warningKey = `${kind}WarningPercent` as const;
  const criticalKey = `${kind}CriticalPercent` as const;
  const warning = num(read, warningKey, problems);
  const critical = num(read, criticalKey, problems);
  if (critical >= warning) return [warning, critical];
  const kept: [number, number] = [previous[warningKey], previous[criticalKey]];
  problems.push(`${SECTION}.${criticalKey} (${critical}) is below ${SECTION}.${warningKey} (${warning}): ` +
    `the ${kind.toUpperCase()} levels stay at ${kept[0]} / ${kept[1]} %`);
  return kept;
}

/** Reads every setting through `read`, falling back to defaults; a critical level below its warning level keeps
 *  the `previous` pair (the settings in force; at start, the defaults). */
export function resolveSettings(read: Reader, previous: Readonly<ExtensionSettings> = DEFAULTS): Resolved {
  const problems: string[] = [];
  const [ramWarning, ramCritical] = levels(read, 'ram', previous, problems);
  const [vramWarning, vramCritical] = levels(read, 'vram', previous, problems);
  const actionRaw = read('criticalAction');
  let criticalAction: CriticalAction = DEFAULTS.criticalAction;
  if ((CRITICAL_ACTIONS as readonly unknown[]).includes(actionRaw)) {
    criticalAction = actionRaw as CriticalAction;
  } else if (actionRaw !== undefined && actionRaw !== null) {
    problems.push(`${SECTION}.criticalAction: ${JSON.stringify(actionRaw)} is not one of ${CRITICAL_ACTIONS.join(', ')}; using "none"`);
  }
  const runsDirectory = str(read, 'runsDirectory', problems) || DEFAULTS.runsDirectory;
  const gpuRaw = read('gpuStatusBar');
  let gpuStatusBar: GpuStatusBarMode = DEFAULTS.gpuStatusBar;
  if ((GPU_STATUS_BAR_MODES as readonly unknown[]).includes(gpuRaw)) gpuStatusBar = gpuRaw as GpuStatusBarMode;
  else if (gpuRaw !== undefined && gpuRaw !== null) {
    problems.push(`${SECTION}.gpuStatusBar: ${JSON.stringify(gpuRaw)} is not one of ${GPU_STATUS_BAR_MODES.join(', ')}; using "auto"`);
  }
  return {
    settings: {
      pythonPath: str(read, 'pythonPath', problems),
      sampleIntervalMs: num(read, 'sampleIntervalMs', problems),
      ramWarningPercent: ramWarning,
      ramCriticalPercent: ramCritical,
      vramWarningPercent: vramWarning,
      vramCriticalPercent: vramCritical,
      autoCleanup: bool(read, 'autoCleanup', problems),
      criticalAction,
      showNotifications: bool(read, 'showNotifications', problems),
      runsDirectory,
      topProcesses: num(read, 'topProcesses', problems),
      hungAfterSeconds: num(read, 'hungAfterSeconds', problems),
      notificationCooldownMinutes: num(read, 'notificationCooldownMinutes', problems),
      pressureSomePercent: num(read, 'pressureSomePercent', problems),
      pressureFullPercent: num(read, 'pressureFullPercent', problems),
      pressureSeconds: num(read, 'pressureSeconds', problems),
      gpuStatusBar,
      monitorPerWindow: bool(read, 'monitorPerWindow', problems),
    },
    problems,
  };
}

/** A folder's runs directory, absolute (`~` expanded; relative to the folder). */
export function runsDirectoryOf(folder: string, setting: string, home = process.env.HOME): string {
  let dir = setting.trim() || DEFAULTS.runsDirectory;
  if (home && (dir === '~' || dir.startsWith('~/'))) dir = home + dir.slice(1);
  return path.resolve(folder, dir);
}

/** A setting's values by scope, as `WorkspaceConfiguration.inspect` gives them. */
export interface ScopedValues {
  defaultValue?: unknown;
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

/** The folder's runs directory, and why the folder's own value was not used (C3). */
export interface RunsDirectoryChoice {
  /** Absolute, resolved through symlinks (what was checked is what the monitor watches). */
  dir: string;
  /** The setting as it applies (relative to the folder, or absolute): F5 passes it as --runs-dir. */
  setting: string;
  /** Set when a workspace or folder value was ignored: it names where it pointed. */
  refused?: string;
}

/** `p` through symlinks, as far as it exists; the part that does not exist yet is appended as it is. */
export function resolveExisting(p: string, realpath: (p: string) => string): string {
  const missing: string[] = [];
  let at = path.resolve(p);
  for (;;) {
    try {
      return path.join(realpath(at), ...missing.reverse());
    } catch {
      const parent = path.dirname(at);
      if (parent === at) return path.join(at, ...missing.reverse());
      missing.push(path.basename(at));
      at = parent;
    }
  }
}

/** Whether `inner` is `outer` or below it (both resolved). */
export function isInside(outer: string, inner: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function settingText(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() ? value.trim() : undefined;
}

/**
 * crashGuard.runsDirectory of `folder` (C3): a value from the workspace or the folder's own settings (a cloned
 * repository's .vscode/settings.json, a .code-workspace file) must resolve, through symlinks, inside that folder —
 * else it is ignored (`refused` says why) and the user's value, else the default, applies. A user (or default)
 * value may point anywhere: the user wrote it. Crash Guard cleans up, stops and signals the runs it finds there, so
 * a folder must not aim it at another project's runs.
 */
export function chooseRunsDirectory(folder: string, values: ScopedValues, realpath: (p: string) => string,
  home = process.env.HOME): RunsDirectoryChoice {
  const userSetting = settingText(values.globalValue) ?? settingText(values.defaultValue) ?? DEFAULTS.runsDirectory;
  const user = (): RunsDirectoryChoice => ({ dir: resolveExisting(runsDirectoryOf(folder, userSetting, home), realpath),
    setting: userSetting });
  const own = settingText(values.workspaceFolderValue) ?? settingText(values.workspaceValue);
  if (own === undefined) return user();
  const realFolder = resolveExisting(folder, realpath);
  const dir = resolveExisting(runsDirectoryOf(folder, own, home), realpath);
  if (isInside(realFolder, dir)) return { dir, setting: own };
  const where = dir === runsDirectoryOf(folder, own, home) ? dir : `${dir}, through a symbolic link`;
  return { ...user(), refused: `${SECTION}.runsDirectory "${own}" from the workspace settings of ${folder} points ` +
    `outside that folder (${where}); a folder may only name runs folders inside it, so ${userSetting} applies ` +
    '(set a folder elsewhere in your user settings)' };
}

/** The part of the settings the sidecar receives, with every folder's absolute runs directory (no repeats). */
export function sidecarSettings(s: ExtensionSettings, runsDirectories: readonly string[]): SidecarSettings {
  const out: Record<string, unknown> = {};
  for (const key of SIDECAR_KEYS) out[key] = s[key];
  return { ...(out as Omit<SidecarSettings, 'runsDirectories'>), runsDirectories: [...new Set(runsDirectories)] };
}

export interface SettingsChange {
  /** The interpreter changed: the sidecar must be restarted. */
  restart: boolean;
  /** crashGuard.monitorPerWindow changed: this window reconnects (its own monitor, or the shared one). */
  reconnect: boolean;
  /** Sidecar values that changed (send as didChangeConfiguration); empty when none. */
  sidecar: Partial<ExtensionSettings>;
}

export function diffSettings(prev: ExtensionSettings, next: ExtensionSettings): SettingsChange {
  const sidecar: Partial<Record<keyof ExtensionSettings, unknown>> = {};
  for (const key of [...SIDECAR_KEYS, 'runsDirectory'] as const) {
    if (prev[key] !== next[key]) sidecar[key] = next[key];
  }
  return { restart: prev.pythonPath !== next.pythonPath, reconnect: prev.monitorPerWindow !== next.monitorPerWindow,
    sidecar: sidecar as Partial<ExtensionSettings> };
}
