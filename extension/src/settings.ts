// Typed settings: package.json `contributes.configuration` → ExtensionSettings → the sidecar's SidecarSettings.
// Pure (no 'vscode' import): the reader is passed in, so the resolution is unit-tested.
import * as path from 'node:path';
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
});

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

function num(read: Reader, key: keyof ExtensionSettings, min: number, max: number, integer: boolean,
  problems: string[]): number {
  const fallback = DEFAULTS[key] as number;
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

/** Reads every setting through `read`, falling back to defaults and keeping critical >= warning. */
export function resolveSettings(read: Reader): Resolved {
  const problems: string[] = [];
  const ramWarning = num(read, 'ramWarningPercent', 1, 100, false, problems);
  let ramCritical = num(read, 'ramCriticalPercent', 1, 100, false, problems);
  const vramWarning = num(read, 'vramWarningPercent', 1, 100, false, problems);
  let vramCritical = num(read, 'vramCriticalPercent', 1, 100, false, problems);
  if (ramCritical < ramWarning) {
    problems.push(`${SECTION}.ramCriticalPercent (${ramCritical}) is below the warning level; using ${ramWarning}`);
    ramCritical = ramWarning;
  }
  if (vramCritical < vramWarning) {
    problems.push(`${SECTION}.vramCriticalPercent (${vramCritical}) is below the warning level; using ${vramWarning}`);
    vramCritical = vramWarning;
  }
  const actionRaw = read('criticalAction');
  let criticalAction: CriticalAction = DEFAULTS.criticalAction;
  if ((CRITICAL_ACTIONS as readonly unknown[]).includes(actionRaw)) {
    criticalAction = actionRaw as CriticalAction;
  } else if (actionRaw !== undefined && actionRaw !== null) {
    problems.push(`${SECTION}.criticalAction: ${JSON.stringify(actionRaw)} is not one of ${CRITICAL_ACTIONS.join(', ')}; using "none"`);
  }
  const runsDirectory = str(read, 'runsDirectory', problems) || DEFAULTS.runsDirectory;
  return {
    settings: {
      pythonPath: str(read, 'pythonPath', problems),
      sampleIntervalMs: num(read, 'sampleIntervalMs', 200, 60000, true, problems),
      ramWarningPercent: ramWarning,
      ramCriticalPercent: ramCritical,
      vramWarningPercent: vramWarning,
      vramCriticalPercent: vramCritical,
      autoCleanup: bool(read, 'autoCleanup', problems),
      criticalAction,
      showNotifications: bool(read, 'showNotifications', problems),
      runsDirectory,
      topProcesses: num(read, 'topProcesses', 0, 20, true, problems),
      hungAfterSeconds: num(read, 'hungAfterSeconds', 1, 86400, false, problems),
      notificationCooldownMinutes: num(read, 'notificationCooldownMinutes', 0, 1440, false, problems),
      pressureSomePercent: num(read, 'pressureSomePercent', 1, 100, false, problems),
      pressureFullPercent: num(read, 'pressureFullPercent', 1, 100, false, problems),
      pressureSeconds: num(read, 'pressureSeconds', 2, 300, false, problems),
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

/** The part of the settings the sidecar receives, with every folder's absolute runs directory (no repeats). */
export function sidecarSettings(s: ExtensionSettings, runsDirectories: readonly string[]): SidecarSettings {
  const out: Record<string, unknown> = {};
  for (const key of SIDECAR_KEYS) out[key] = s[key];
  return { ...(out as Omit<SidecarSettings, 'runsDirectories'>), runsDirectories: [...new Set(runsDirectories)] };
}

export interface SettingsChange {
  /** The interpreter changed: the sidecar must be restarted. */
  restart: boolean;
  /** Sidecar values that changed (send as didChangeConfiguration); empty when none. */
  sidecar: Partial<ExtensionSettings>;
}

export function diffSettings(prev: ExtensionSettings, next: ExtensionSettings): SettingsChange {
  const sidecar: Partial<Record<keyof ExtensionSettings, unknown>> = {};
  for (const key of [...SIDECAR_KEYS, 'runsDirectory'] as const) {
    if (prev[key] !== next[key]) sidecar[key] = next[key];
  }
  return { restart: prev.pythonPath !== next.pythonPath, sidecar: sidecar as Partial<ExtensionSettings> };
}
