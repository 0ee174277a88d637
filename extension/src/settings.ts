// Typed settings: package.json `contributes.configuration` → ExtensionSettings → the sidecar's SidecarSettings.
// Pure (no 'vscode' import): the reader is passed in, so the resolution is unit-tested.
import type { CriticalAction, SidecarSettings } from './protocol';

export const SECTION = 'crashGuard';

export interface ExtensionSettings extends SidecarSettings {
  /** Interpreter for the sidecar; empty = discover (Python extension → python3). */
  pythonPath: string;
  showNotifications: boolean;
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
  pressureSomePercent: 20,
  pressureFullPercent: 10,
  pressureSeconds: 10,
});

/** Keys the sidecar understands (everything else stays in the extension). */
export const SIDECAR_KEYS: readonly (keyof SidecarSettings)[] = [
  'sampleIntervalMs', 'ramWarningPercent', 'ramCriticalPercent', 'vramWarningPercent', 'vramCriticalPercent',
  'autoCleanup', 'criticalAction', 'runsDirectory', 'topProcesses', 'pressureSomePercent', 'pressureFullPercent',
  'pressureSeconds',
];

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
  if (actionRaw === 'none' || actionRaw === 'checkpointAndStop') {
    criticalAction = actionRaw;
  } else if (actionRaw !== undefined && actionRaw !== null) {
    problems.push(`${SECTION}.criticalAction: ${JSON.stringify(actionRaw)} is not "none" or "checkpointAndStop"; using "none"`);
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
      pressureSomePercent: num(read, 'pressureSomePercent', 1, 100, false, problems),
      pressureFullPercent: num(read, 'pressureFullPercent', 1, 100, false, problems),
      pressureSeconds: num(read, 'pressureSeconds', 2, 300, false, problems),
    },
    problems,
  };
}

/** The part of the settings the sidecar receives. */
export function sidecarSettings(s: ExtensionSettings): SidecarSettings {
  const out: Partial<Record<keyof SidecarSettings, unknown>> = {};
  for (const key of SIDECAR_KEYS) out[key] = s[key];
  return out as SidecarSettings;
}

export interface SettingsChange {
  /** The interpreter changed: the sidecar must be restarted. */
  restart: boolean;
  /** Sidecar values that changed (send as didChangeConfiguration); empty when none. */
  sidecar: Partial<SidecarSettings>;
}

export function diffSettings(prev: ExtensionSettings, next: ExtensionSettings): SettingsChange {
  const sidecar: Partial<Record<keyof SidecarSettings, unknown>> = {};
  for (const key of SIDECAR_KEYS) {
    if (prev[key] !== next[key]) sidecar[key] = next[key];
  }
  return { restart: prev.pythonPath !== next.pythonPath, sidecar: sidecar as Partial<SidecarSettings> };
}
