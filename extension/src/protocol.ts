// Mirror of docs/protocol.md (source of truth: crashguard/sidecar/protocol.py). Pure: no 'vscode' import.
// Every payload the extension reads is a checker (check.ts) and its type is derived from it, so what is declared
// is what is checked. tests/extension/unit/protocol.test.ts compares method names, the protocol version and every
// field (name, kind, null or not) with the Python dataclasses.
import {
  arrayOf, arrayOfValid, bool, contained, either, int, maybe, nullable, num, object, oneOf, optional, str, text,
  type Checked,
} from './check';

/** Bumped with every incompatible change; the same constant is crashguard/sidecar/handshake.py's. */
export const PROTOCOL_VERSION = 2;

export const METHOD_SAMPLE = 'crashGuard/sample';
export const METHOD_WARNING = 'crashGuard/warning';
export const METHOD_RUN_EVENT = 'crashGuard/runEvent';
export const METHOD_ACTION = 'crashGuard/action';
export const METHOD_STATUS = 'crashGuard/status';
export const METHOD_CLEANUP = 'crashGuard/cleanup';
export const METHOD_RUNS = 'crashGuard/runs';
export const METHOD_STOP_RUN = 'crashGuard/stopRun';
export const METHOD_PROCESS_DETAIL = 'crashGuard/processDetail';
export const METHOD_UPDATE_SETTINGS = 'crashGuard/updateSettings';
export const METHOD_HISTORY = 'crashGuard/history';
/** Client → server: `{ focused }`, whenever this window gains or loses focus (a warning shows in one window). */
export const METHOD_WINDOW_STATE = 'crashGuard/windowState';
/** Client → server: `{replace?}`: "Stop Memory Monitor" (the shared monitor exits once no other window is connected) or,
 *  with `replace: true`, "Restart Memory Monitor" (it exits for every window, which reconnect to a new one). */
export const METHOD_STOP_MONITOR = 'crashGuard/stopMonitor';
/** End the process that keeps a crashed run's lock (RunInfo.lockHolder), after the user chose to. */
export const METHOD_END_LOCK_HOLDER = 'crashGuard/endLockHolder';
/** Standard LSP notification carrying `{ settings: { crashGuard: SidecarSettings } }`. */
export const METHOD_DID_CHANGE_CONFIGURATION = 'workspace/didChangeConfiguration';

/** Server → client notifications. */
export const NOTIFICATIONS = [METHOD_SAMPLE, METHOD_WARNING, METHOD_RUN_EVENT, METHOD_ACTION] as const;
/** JSON-RPC error code of a request refused because its pool is full (or the server is shutting down). */
export const ERROR_SERVER_BUSY = -32000;

/** Client → server requests. */
export const REQUESTS = [
  METHOD_STATUS, METHOD_CLEANUP, METHOD_RUNS, METHOD_STOP_RUN, METHOD_PROCESS_DETAIL, METHOD_UPDATE_SETTINGS,
  METHOD_HISTORY, METHOD_END_LOCK_HOLDER,
] as const;
/** Client → server notifications. */
export const CLIENT_NOTIFICATIONS = [METHOD_WINDOW_STATE, METHOD_STOP_MONITOR] as const;

export const LEVELS = ['normal', 'warning', 'critical'] as const;
/** A resource's level (with hysteresis). */
export type Level = typeof LEVELS[number];
const level = oneOf(LEVELS);
/** The level a forecast says will be reached: also 'full' (100 % of the limit) for a resource already critical. */
export type ForecastLevel = Level | 'full';
export const FORECAST_LEVELS = [...LEVELS, 'full'] as const;
export const CRITICAL_ACTIONS = ['none', 'checkpointAndStop'] as const;
export type CriticalAction = typeof CRITICAL_ACTIONS[number];
/** `hung` (contract 3): alive, but its status has not moved for N × its typical step time (at least a floor). */
export const RUN_STATES = ['starting', 'running', 'stopping', 'finished', 'stopped', 'failed', 'crashed', 'hung'] as const;
export type RunState = typeof RUN_STATES[number];
export const RUN_EVENTS = ['started', 'finished', 'stopped', 'failed', 'crashed', 'hung', 'recovered'] as const;
export type RunEventKind = typeof RUN_EVENTS[number];
/** The escalation ladder's rungs (contract 4): `terminate` is SIGTERM after the stop timeout. */
export const ACTIONS = ['cleanup', 'checkpointAndStop', 'terminate'] as const;
export type ActionKind = typeof ACTIONS[number];
/** The wire's bounds on strings (contract C2), as crashguard/sidecar/protocol.py's TEXT_LIMITS and MAX_TEXT cut them
 *  (in characters, i.e. code points): a string under one of these keys is at most its limit, any other at most
 *  MAX_TEXT. A run with a longer one is a bad run (dropped and logged once), never an incompatible monitor.
 *  tests/extension/unit/protocol.test.ts compares them with Python's. */
export const TEXT_LIMITS = { lastEvent: 500, exitCause: 500, name: 255, message: 2000, command: 1000 } as const;
export const MAX_TEXT = 4096;
const name = text(TEXT_LIMITS.name);
const filePath = text(MAX_TEXT);

/** The sidecar's settings (initializationOptions.settings and didChangeConfiguration.settings.crashGuard). */
export interface SidecarSettings {
  sampleIntervalMs: number;
  ramWarningPercent: number;
  ramCriticalPercent: number;
  vramWarningPercent: number;
  vramCriticalPercent: number;
  autoCleanup: boolean;
  criticalAction: CriticalAction;
  /** Absolute, one per workspace folder (contract 7): the sidecar keeps one registry per directory. */
  runsDirectories: string[];
  topProcesses: number;
  /** A live run whose status has not moved for this long (at least) is reported hung. */
  hungAfterSeconds: number;
  /** Memory pressure (PSI): a warning when tasks were stalled on memory this % of the last `pressureSeconds`
   * ("some": at least one task; "full": all at once), even below the RAM thresholds. */
  pressureSomePercent: number;
  pressureFullPercent: number;
  pressureSeconds: number;
}

/** What `initialize` carries besides the settings. */
export interface InitializationOptions {
  protocolVersion: number;
  settings: SidecarSettings;
}

/** The sidecar's announcement in the initialize result: capabilities.experimental.crashGuard. */
export const Announcement = object('Announcement', { protocolVersion: int, version: str });
export type Announcement = Checked<typeof Announcement>;

export const RamInfo = object('RamInfo', {
  total: num, available: num, used: num, percent: num, swapTotal: num, swapUsed: num, swapPercent: num,
  physicalTotal: num, limitSource: str, cgroupPath: nullable(str), level,
});
export type RamInfo = Checked<typeof RamInfo>;

/** A process holding memory on a GPU (contract 6; older sidecars list none). */
export const GpuProcessInfo = object('GpuProcessInfo', {
  pid: int, name: str, user: nullable(str), command: nullable(str), used: nullable(num),
});
export type GpuProcessInfo = Checked<typeof GpuProcessInfo>;

export const GpuInfo = object('GpuInfo', {
  index: int, name: str, total: nullable(num), used: nullable(num), percent: nullable(num),
  utilization: nullable(int), level,
  /** Heaviest first (contract 6). Absent from an older sidecar: unknown, not "none". */
  processes: maybe(arrayOf(GpuProcessInfo)),
});
export type GpuInfo = Checked<typeof GpuInfo>;

export const ProcessInfo = object('ProcessInfo', { pid: int, name: str, rss: num });
export type ProcessInfo = Checked<typeof ProcessInfo>;

/** How to resume a run (contract 9): argv[0] is the interpreter, run in cwd without a shell. */
export const ResumeCommand = object('ResumeCommand', { argv: arrayOf(filePath, 256), cwd: filePath });
export type ResumeCommand = Checked<typeof ResumeCommand>;

/** A live run's memory cgroup, read by the sidecar from the kernel; present when the group has a limit or high mark. */
export const RunMemory = object('RunMemory', {
  cgroup: str, version: int, current: num, workingSet: num, max: nullable(num),
  /** The high mark (cgroup v2 memory.high; v1: the soft limit Crash Guard's containment sets to it). */
  high: nullable(num),
  /** The kernel's throttle events at the high mark (cgroup v2; null on v1). */
  highEvents: nullable(num),
  /** Times the hard limit was hit (v2 memory.events max; v1 failcnt). */
  maxEvents: nullable(num), oomKills: nullable(num),
  /** The trainer's own count of step boundaries it ended over its high mark. */
  overHigh: nullable(num),
  /** % of the last pressureSeconds stalled on memory (its cgroup v2 group's PSI); null without. */
  pressureSome: nullable(num), pressureFull: nullable(num),
});
export type RunMemory = Checked<typeof RunMemory>;

/** Memory pressure (PSI): the share of the last `seconds` during which tasks were stalled waiting for memory. */
export const PressureInfo = object('PressureInfo', {
  some: num, full: nullable(num), seconds: num, avg10Some: num, avg10Full: nullable(num),
  level: oneOf(['normal', 'warning'] as const),
});
export type PressureInfo = Checked<typeof PressureInfo>;

/** A live process still holding a crashed run's lock (a stray child kept it): Resume would fail with RunLocked. */
export const LockHolder = object('LockHolder', { pid: int, command: text(TEXT_LIMITS.command) });
export type LockHolder = Checked<typeof LockHolder>;

/** Contract C1: what proves a crash. `witnessed`: the monitor proved the run alive and saw it die; `supervisor`: its
 *  supervisor or watchdog sealed the record. null: only a file says so (no prompt, no Resume). */
export const CRASH_PROOFS = ['witnessed', 'supervisor'] as const;
export type CrashProof = typeof CRASH_PROOFS[number];

export const RunInfo = object('RunInfo', {
  name, dir: filePath, pid: nullable(int), rank: int, worldSize: int, state: oneOf(RUN_STATES), alive: bool,
  step: nullable(int), epoch: nullable(int), microBatch: nullable(int), accumulation: nullable(int),
  loss: nullable(num), peakRss: nullable(num), treeRss: nullable(num), vram: nullable(num),
  lastEvent: nullable(text(TEXT_LIMITS.lastEvent)), exitCause: nullable(text(TEXT_LIMITS.exitCause)),
  config: nullable(filePath), checkpoint: nullable(filePath),
  started: nullable(num), updated: nullable(num),
  // Contracts 3 and 9: sent by sidecars that detect hung runs / record how to resume; absent from older ones.
  stepSeconds: optional(nullable(num), null),
  stalledSeconds: optional(nullable(num), null),
  resumeCommand: optional(nullable(ResumeCommand), null),
  /** The score it volunteers to the kernel's OOM killer with (the live process's; else the one it recorded). */
  oomScoreAdj: optional(nullable(int), null),
  /** Its own memory cgroup (`crashguard train --memory-max`); null when it has none. */
  memory: optional(nullable(RunMemory), null),
  /** The newest checkpoint's step and the wall time (s) of its boundary: what a crash now redoes. */
  checkpointStep: optional(nullable(int), null),
  checkpointTime: optional(nullable(num), null),
  /** RAM (bytes) a checkpoint being written in the background holds; null when none is. */
  snapshotBytes: optional(nullable(num), null),
  /** A crash's proof (contract C1); absent from older sidecars: no proof. */
  crashProof: optional(nullable(oneOf(CRASH_PROOFS)), null),
  /** crashGuard/runs only: the process still holding a proven crash's lock. */
  lockHolder: optional(nullable(LockHolder), null),
});
export type RunInfo = Checked<typeof RunInfo>;

export const Forecast = object('Forecast', {
  resource: str, level: oneOf(FORECAST_LEVELS), seconds: num, bytesPerSecond: num, message: str,
  /** 'trend': a crossing `seconds` ahead; 'pressure': memory stalls now (seconds and bytesPerSecond 0). */
  kind: optional(oneOf(['trend', 'pressure'] as const), 'trend'),
});
export type Forecast = Checked<typeof Forecast>;

export const Thresholds = object('ThresholdsInfo', {
  ramWarningPercent: num, ramCriticalPercent: num, vramWarningPercent: num, vramCriticalPercent: num,
  pressureSomePercent: optional(num, 20), pressureFullPercent: optional(num, 10), pressureSeconds: optional(num, 10),
});
export type Thresholds = Checked<typeof Thresholds>;

export const Sample = object('Sample', {
  seq: int, time: num, level, ram: RamInfo, gpus: arrayOf(GpuInfo), gpuReason: nullable(str),
  topProcesses: arrayOf(ProcessInfo),
  /** A run with a bad field is dropped (and logged) here, not the sample (C2). */
  runs: arrayOfValid(RunInfo), forecasts: arrayOf(Forecast), thresholds: Thresholds,
  /** How long taking the sample took in the sidecar (ms). */
  costMs: num,
  /** The whole system's memory pressure; null until a window is covered or without PSI. */
  pressure: optional(nullable(PressureInfo), null),
  /** Why there is no pressure figure at all (PSI unavailable). */
  pressureReason: optional(nullable(str), null),
  /** Runs left out of `runs` (contract C2: a sample stays within 64 KiB; live runs and the newest come first). */
  runsOmitted: optional(int, 0),
});
export type Sample = Checked<typeof Sample>;

export const WarningParams = object('WarningParams', {
  resource: str, level, previous: level, percent: num, thresholdPercent: num, message: str, runs: arrayOf(str),
  time: num,
});
export type WarningParams = Checked<typeof WarningParams>;

export const RunEventParams = object('RunEventParams', {
  /** A bad field of the run drops this event (ContainedError), never the sidecar. */
  event: oneOf(RUN_EVENTS), run: contained(RunInfo), message: str,
  /** A run killed by the kernel's OOM killer: the heaviest processes of the last sample before its death. */
  heaviest: optional(nullable(arrayOf(ProcessInfo)), null),
});
export type RunEventParams = Checked<typeof RunEventParams>;

export const CleanupStep = object('CleanupStep', { name: str, done: bool, detail: str, freed: nullable(num) });
export type CleanupStep = Checked<typeof CleanupStep>;

export const CleanupReport = object('CleanupReport', {
  pid: int, rssBefore: num, rssAfter: num, rssFreed: num, vramBefore: nullable(num), vramAfter: nullable(num),
  vramFreed: nullable(num), seconds: num, steps: arrayOf(CleanupStep),
});
export type CleanupReport = Checked<typeof CleanupReport>;

export const RunCleanup = object('RunCleanup', {
  run: str,
  /** The rank of a distributed run (0 for a single process); one entry per rank. */
  rank: int,
  pid: nullable(int), ok: bool, report: nullable(CleanupReport), error: nullable(str),
  /** The run's tree RSS measured by the sidecar around the request. */
  rssBefore: nullable(num), rssAfter: nullable(num),
});
export type RunCleanup = Checked<typeof RunCleanup>;

export const CleanupResult = object('CleanupResult', {
  ramBefore: num, ramAfter: num, freed: num, sidecar: nullable(CleanupReport), runs: arrayOf(RunCleanup),
});
export type CleanupResult = Checked<typeof CleanupResult>;

export const StopResult = object('StopResult', {
  run: str, ok: bool, state: str, checkpoint: nullable(str), message: str, signalled: bool,
});
export type StopResult = Checked<typeof StopResult>;

export const ActionParams = object('ActionParams', {
  action: oneOf(ACTIONS), reason: str,
  // A cleanup's result, or a stop's (checkpointAndStop, terminate): told apart by their fields.
  result: either((v) => 'ramBefore' in v, CleanupResult, StopResult),
  // A toast in this window? The shared monitor says true to one window (where a warning would go), false to the
  // others, which only log it: one toast per action on the host.
  notify: optional(bool, true),
});
export type ActionParams = Checked<typeof ActionParams>;

export function isCleanupResult(result: CleanupResult | StopResult): result is CleanupResult {
  return 'ramBefore' in result;
}

export interface CleanupParams {
  runs?: string[];
  timeoutMs?: number;
}

export interface StopRunParams {
  run: string;
  /** The run's folder (RunInfo.dir): picks its runs directory in a multi-root workspace. */
  dir?: string;
  timeoutMs?: number;
}

export interface EndLockHolderParams {
  /** The crashed run's folder (RunInfo.dir). */
  dir: string;
  /** RunInfo.lockHolder.pid: signalled only if it still holds that run's lock. */
  pid: number;
  /** The rank of the RunInfo that named it (whose lock it holds). */
  rank?: number;
  /** SIGKILL instead of SIGTERM: sent only after the user chose "End Forcibly" when SIGTERM left it running. */
  force?: boolean;
}

export const EndHolderResult = object('EndHolderResult', {
  run: str, pid: int, ok: bool, signalled: bool, message: str,
});
export type EndHolderResult = Checked<typeof EndHolderResult>;

export const RunsResult = object('RunsResult', {
  runs: arrayOfValid(RunInfo),
  runsOmitted: optional(int, 0),
});
export type RunsResult = Checked<typeof RunsResult>;

export const ProcessDetail = object('ProcessDetailResult', {
  pid: int, rss: num, uss: nullable(num), pss: nullable(num), swap: nullable(num),
});
export type ProcessDetail = Checked<typeof ProcessDetail>;

export interface HistoryParams {
  /** The window, in seconds (0 < s <= 86400); absent: everything the sidecar keeps. */
  seconds?: number;
}

/** One kept sample, compact. */
export const HistoryPoint = object('HistoryPoint', {
  time: num, ramPercent: num, ramUsed: num,
  /** One per GPU, in HistoryResult.gpuNames' order; null when NVML gave no figure. */
  gpuPercent: arrayOf(nullable(num)),
});
export type HistoryPoint = Checked<typeof HistoryPoint>;

export const HISTORY_EVENT_KINDS = ['level', 'run', 'training', 'action'] as const;
export type HistoryEventKind = typeof HISTORY_EVENT_KINDS[number];

export const HistoryEvent = object('HistoryEvent', {
  time: num, kind: oneOf(HISTORY_EVENT_KINDS), message: str,
  /** "RAM", "GPU 0" (level changes). */
  resource: nullable(str),
  /** The level entered (level), the run event (run: started, crashed, ...) or the action (action). */
  level: nullable(str),
  run: nullable(str),
});
export type HistoryEvent = Checked<typeof HistoryEvent>;

export const HistoryResult = object('HistoryResult', {
  points: arrayOf(HistoryPoint), events: arrayOf(HistoryEvent), thresholds: Thresholds, gpuNames: arrayOf(str),
  intervalMs: num, maxPoints: int,
});
export type HistoryResult = Checked<typeof HistoryResult>;


/** Each server → client notification's checker. */
export const NOTIFICATION_PAYLOADS = {
  [METHOD_SAMPLE]: Sample,
  [METHOD_WARNING]: WarningParams,
  [METHOD_RUN_EVENT]: RunEventParams,
  [METHOD_ACTION]: ActionParams,
} as const;
