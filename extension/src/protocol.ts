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
export type RunState = 'starting' | 'running' | 'stopping' | 'finished' | 'stopped' | 'failed' | 'crashed';
export type RunEventKind = 'started' | 'finished' | 'stopped' | 'failed' | 'crashed';

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

export interface GpuInfo {
  index: number;
  name: string;
  total: number | null;
  used: number | null;
  percent: number | null;
  utilization: number | null;
  level: Level;
}

export interface ProcessInfo {
  pid: number;
  name: string;
  rss: number;
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
  /** How to resume the run: run exactly this argv (argv[0] is the interpreter) in cwd, never through a shell. */
  resumeCommand?: ResumeCommand | null;
}

export interface ResumeCommand {
  argv: string[];
  cwd: string;
}

export interface Forecast {
  resource: string;
  level: ForecastLevel;
  seconds: number;
  bytesPerSecond: number;
  message: string;
}

export interface Thresholds {
  ramWarningPercent: number;
  ramCriticalPercent: number;
  vramWarningPercent: number;
  vramCriticalPercent: number;
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
  action: 'cleanup' | 'checkpointAndStop';
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
