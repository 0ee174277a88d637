// Mirror of docs/protocol.md (source of truth: python_backend/sidecar/protocol.py). Pure: no 'vscode' import.
// tests/extension/unit/protocol.test.ts compares these method names with the doc and the Python module.

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
/** Standard LSP notification carrying `{ settings: { crashGuard: SidecarSettings } }`. */
export const METHOD_DID_CHANGE_CONFIGURATION = 'workspace/didChangeConfiguration';

/** Server → client notifications. */
export const NOTIFICATIONS = [METHOD_SAMPLE, METHOD_WARNING, METHOD_RUN_EVENT, METHOD_ACTION] as const;
/** JSON-RPC error code of a request refused because its pool is full (or the server is shutting down). */
export const ERROR_SERVER_BUSY = -32000;

/** Client → server requests. */
export const REQUESTS = [
  METHOD_STATUS, METHOD_CLEANUP, METHOD_RUNS, METHOD_STOP_RUN, METHOD_PROCESS_DETAIL, METHOD_UPDATE_SETTINGS,
  METHOD_HISTORY,
] as const;

/** A resource's level (with hysteresis). */
export type Level = 'normal' | 'warning' | 'critical';
/** The level a forecast says will be reached: also 'full' (100 % of the limit) for a resource already critical. */
export type ForecastLevel = Level | 'full';
export type CriticalAction = 'none' | 'checkpointAndStop';
/** `hung`: alive, not ended, no status update for max(hungAfterSeconds, 10 × stepSeconds) (derived by the sidecar). */
export type RunState =
  'starting' | 'running' | 'stopping' | 'hung' | 'finished' | 'stopped' | 'failed' | 'crashed';
export type RunEventKind = 'started' | 'finished' | 'stopped' | 'failed' | 'crashed' | 'hung' | 'recovered';
/** The escalation ladder's rungs, as `crashGuard/action` reports them (terminate: SIGTERM after the stop timeout). */
export type LadderAction = 'cleanup' | 'checkpointAndStop' | 'terminate';

/** The sidecar's settings (initializationOptions.settings and didChangeConfiguration.settings.crashGuard). */
export interface SidecarSettings {
  sampleIntervalMs: number;
  ramWarningPercent: number;
  ramCriticalPercent: number;
  vramWarningPercent: number;
  vramCriticalPercent: number;
  autoCleanup: boolean;
  criticalAction: CriticalAction;
  runsDirectory: string;
  topProcesses: number;
  /** Seconds without a status update after which a live run is `hung` (at least; 10 × its step time if longer).
   * Optional until the extension's settings carry it; the sidecar's default is 120. */
  hungAfterSeconds?: number;
  /** Memory pressure (PSI): a warning when tasks were stalled on memory this % of the last `pressureSeconds`
   * ("some": at least one task; "full": all at once), even below the RAM thresholds. Sidecar defaults 20, 10, 10. */
  pressureSomePercent?: number;
  pressureFullPercent?: number;
  pressureSeconds?: number;
}

export interface RamInfo {
  total: number;
  available: number;
  used: number;
  percent: number;
  swapTotal: number;
  swapUsed: number;
  swapPercent: number;
  physicalTotal: number;
  limitSource: string;
  cgroupPath: string | null;
  level: Level;
}

/** A process holding memory on a GPU: every process NVML lists there, guarded run or not. */
export interface GpuProcessInfo {
  pid: number;
  name: string;
  /** null: not visible from the sidecar (another pid namespace, or gone). */
  user: string | null;
  command: string | null;
  /** Bytes on this GPU; null where the driver does not say. */
  used: number | null;
}

export interface GpuInfo {
  /** NVML's index, as nvidia-smi numbers the GPUs. */
  index: number;
  name: string;
  total: number | null;
  used: number | null;
  percent: number | null;
  utilization: number | null;
  level: Level;
  /** Heaviest first. Absent from a sidecar older than this field: treat as unknown, not as "none". */
  processes?: GpuProcessInfo[];
}

export interface ProcessInfo {
  pid: number;
  name: string;
  rss: number;
}

/** A live run's memory cgroup, read by the sidecar from the kernel; present when the group has a limit or high mark. */
export interface RunMemory {
  cgroup: string;
  version: number;
  current: number;
  workingSet: number;
  max: number | null;
  /** The high mark (cgroup v2 memory.high; v1: the soft limit Crash Guard's containment sets to it). */
  high: number | null;
  /** The kernel's throttle events at the high mark (cgroup v2; null on v1). */
  highEvents: number | null;
  /** Times the hard limit was hit (v2 memory.events max; v1 failcnt). */
  maxEvents: number | null;
  oomKills: number | null;
  /** The trainer's own count of step boundaries it ended over its high mark. */
  overHigh: number | null;
  /** % of the last pressureSeconds stalled on memory (its cgroup v2 group's PSI); null without. */
  pressureSome: number | null;
  pressureFull: number | null;
}

export interface RunInfo {
  name: string;
  dir: string;
  pid: number | null;
  rank: number;
  worldSize: number;
  state: RunState;
  alive: boolean;
  step: number | null;
  epoch: number | null;
  microBatch: number | null;
  accumulation: number | null;
  loss: number | null;
  peakRss: number | null;
  treeRss: number | null;
  vram: number | null;
  lastEvent: string | null;
  exitCause: string | null;
  config: string | null;
  checkpoint: string | null;
  started?: number | null;
  updated: number | null;
  /** The run's typical step time (s), as its hook publishes it; null before two steps. */
  stepSeconds: number | null;
  /** Seconds since the run's status was last updated; null unless it is alive and not ended. */
  stalledSeconds: number | null;
  /** The score it volunteers to the kernel's OOM killer with (the live process's; else the one it recorded). */
  oomScoreAdj?: number | null;
  /** Its own memory cgroup (`crashguard train --memory-max`); null/absent when it has none. */
  memory?: RunMemory | null;
}

export interface Forecast {
  resource: string;
  level: ForecastLevel;
  seconds: number;
  bytesPerSecond: number;
  message: string;
  /** 'trend': a crossing `seconds` ahead; 'pressure': memory stalls now (seconds and bytesPerSecond 0). */
  kind?: 'trend' | 'pressure';
}

/** Memory pressure (PSI): the share of the last `seconds` during which tasks were stalled waiting for memory. */
export interface PressureInfo {
  some: number;
  full: number | null;
  seconds: number;
  avg10Some: number;
  avg10Full: number | null;
  level: 'normal' | 'warning';
}

export interface Thresholds {
  ramWarningPercent: number;
  ramCriticalPercent: number;
  vramWarningPercent: number;
  vramCriticalPercent: number;
  pressureSomePercent?: number;
  pressureFullPercent?: number;
  pressureSeconds?: number;
}

export interface Sample {
  seq: number;
  time: number;
  level: Level;
  ram: RamInfo;
  gpus: GpuInfo[];
  gpuReason: string | null;
  topProcesses: ProcessInfo[];
  runs: RunInfo[];
  forecasts: Forecast[];
  thresholds: Thresholds;
  /** How long taking the sample took in the sidecar (ms). */
  costMs?: number;
  /** The whole system's memory pressure; null until a window is covered or without PSI. */
  pressure?: PressureInfo | null;
  /** Why there is no pressure figure at all (PSI unavailable). */
  pressureReason?: string | null;
}

export interface WarningParams {
  resource: string;
  level: Level;
  previous: Level;
  percent: number;
  thresholdPercent: number;
  message: string;
  runs: string[];
  time: number;
}

export interface RunEventParams {
  event: RunEventKind;
  run: RunInfo;
  message: string;
  /** A run killed by the kernel's OOM killer: the heaviest processes of the last sample before its death. */
  heaviest?: ProcessInfo[] | null;
}

export interface CleanupStep {
  name: string;
  done: boolean;
  detail: string | null;
  freed: number | null;
}

export interface CleanupReport {
  pid: number;
  rssBefore: number;
  rssAfter: number;
  rssFreed: number;
  vramBefore: number | null;
  vramAfter: number | null;
  vramFreed: number | null;
  seconds: number;
  steps: CleanupStep[];
}

export interface RunCleanup {
  run: string;
  rank?: number; // the rank of a distributed run (0 for a single process); one entry per rank
  pid: number | null;
  ok: boolean;
  report: CleanupReport | null;
  error: string | null;
}

export interface CleanupResult {
  ramBefore: number;
  ramAfter: number;
  freed: number;
  sidecar: CleanupReport;
  runs: RunCleanup[];
}

export interface StopResult {
  run: string;
  ok: boolean;
  state: RunState;
  checkpoint: string | null;
  message: string;
  signalled: boolean;
}

export interface ActionParams {
  action: LadderAction;
  reason: string;
  result: CleanupResult | StopResult;
}

export interface CleanupParams {
  runs?: string[];
  timeoutMs?: number;
}

export interface StopRunParams {
  run: string;
  timeoutMs?: number;
}

export interface RunsResult {
  runs: RunInfo[];
}

export interface ProcessDetail {
  pid: number;
  rss: number;
  uss: number | null;
  pss: number | null;
  swap: number | null;
}

export interface HistoryParams {
  /** The window, in seconds (0 < s <= 86400); absent: everything the sidecar keeps. */
  seconds?: number;
}

/** One kept sample, compact. */
export interface HistoryPoint {
  time: number;
  ramPercent: number;
  ramUsed: number;
  /** One per GPU, in HistoryResult.gpuNames' order; null when NVML gave no figure. */
  gpuPercent: (number | null)[];
}

export type HistoryEventKind = 'level' | 'run' | 'training' | 'action';

export interface HistoryEvent {
  time: number;
  kind: HistoryEventKind;
  message: string;
  /** "RAM", "GPU 0" (level changes). */
  resource: string | null;
  /** The level entered (level), the run event (run: started, crashed, ...) or the action (action). */
  level: string | null;
  run: string | null;
}

export interface HistoryResult {
  points: HistoryPoint[];
  events: HistoryEvent[];
  thresholds: Thresholds;
  gpuNames: string[];
  intervalMs: number;
  maxPoints: number;
}
