// Pure text formatting for gauges, tooltips, notifications and the report. No 'vscode' import.
// Every string that came over the wire is escaped for where it is shown (escape.ts): Markdown in tooltips,
// notification text in toasts, plain text in a modal's detail. The report's webview puts text in with textContent.
import { displayCommand } from './cli';
import type { HeldLock, ResolvedResume } from './crashes';
import { detailText, inlineCode, markdownText, messageText, plainText } from './escape';
import { levelIcon } from './levels';
import type { CleanupResult, CrashProof, GpuInfo, Level, RunInfo, Sample, StopResult } from './protocol';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return 'n/a';
  const sign = bytes < 0 ? '-' : '';
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${sign}${value.toFixed(digits)} ${UNITS[unit]}`;
}

export function formatPercent(percent: number | null | undefined, digits = 0): string {
  if (percent === null || percent === undefined || !Number.isFinite(percent)) return 'n/a';
  return `${digits === 0 ? Math.round(percent) : percent.toFixed(digits)}%`;
}

export function formatSeconds(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** The RAM gauge: its icon changes at warning and critical (levels.ts levelIcon), not only its colour. */
export function ramGaugeText(percent: number, level: Level = 'normal'): string {
  return `${levelIcon(level, 'pulse')} RAM ${formatPercent(percent)}`;
}

export function gpuGaugeText(gpu: GpuInfo, gpuCount: number): string {
  const label = gpuCount > 1 ? `VRAM${gpu.index}` : 'VRAM';
  return `${levelIcon(gpu.level, 'chip')} ${label} ${formatPercent(gpu.percent)}`;
}

/** The memory monitor's state as the gauge shows it. `noPython`: no Python >= 3.10 was found to run it. */
export type SidecarState = 'starting' | 'running' | 'stale' | 'down' | 'stopped' | 'restricted' | 'incompatible' |
  'noPython';

/** What the RAM gauge says when there is no fresh sample: never a stale number. */
export function noDataGaugeText(state: Exclude<SidecarState, 'running'>): string {
  switch (state) {
    case 'starting': return '$(loading~spin) RAM …';
    case 'stale': return '$(warning) RAM: no data';
    case 'down': return '$(debug-disconnect) RAM: monitor down';
    case 'stopped': return '$(circle-slash) RAM: monitor off';
    case 'restricted': return '$(shield) Crash Guard: Restricted Mode';
    case 'incompatible': return '$(warning) RAM: monitor incompatible';
    case 'noPython': return '$(warning) RAM: needs Python 3.10+';
  }
}

/** A run that stopped making progress: "no progress for 6 min". */
export function stalledText(run: Pick<RunInfo, 'stalledSeconds'>): string {
  return run.stalledSeconds !== null ? `no progress for ${formatSeconds(run.stalledSeconds)}` : 'no progress';
}

/** The tooltip's "which Python" lines (monitor, training), as Markdown. */
export interface PythonLines {
  monitor: string;
  training: string;
}

const LEVEL_LABEL: Record<Level, string> = { normal: 'normal', warning: '**warning**', critical: '**CRITICAL**' };

/** " rank 1/4" for a rank of a torchrun world, "" for a single-process run. */
export function rankLabel(run: Pick<RunInfo, 'rank' | 'worldSize'>): string {
  return run.worldSize > 1 ? ` rank ${run.rank}/${run.worldSize}` : '';
}

/** One line per process: each rank of a distributed run has its own, with its own memory. */
function runLine(run: RunInfo, extra: readonly string[] = []): string {
  const state = run.state === 'hung' ? `**hung** (${stalledText(run)})` : run.state;
  const parts = [`${inlineCode(run.name)}${rankLabel(run)} ${state}`];
  if (run.step !== null) parts.push(`step ${run.step}`);
  if (run.microBatch !== null) parts.push(`micro-batch ${run.microBatch}`);
  if (run.treeRss !== null) parts.push(`RSS ${formatBytes(run.treeRss)}`);
  if (run.vram !== null) parts.push(`VRAM ${formatBytes(run.vram)}`);
  parts.push(...extra);
  if (run.lastEvent) parts.push(`— ${markdownText(run.lastEvent)}`);
  return `- ${parts.join(', ')}`;
}

/** Lines other modules add to the tooltip (defences.ts: memory pressure, a run's OOM score and cgroup). */
export interface TooltipExtras {
  pressure?: string | null;
  runParts?: (run: RunInfo) => string[];
  /** What this platform lacks (platform.ts): said once, after the guarded runs. */
  platform?: string | null;
  /** A memory monitor of this window's own (monitorTransport.ts): said after the platform's line. */
  transport?: string | null;
}

/** Runs listed in the tooltip (live and most recent first, as the monitor sends them); the rest are counted. */
export const TOOLTIP_RUNS = 10;

/** "… and 9,990 more runs": what the monitor left out of the sample (runsOmitted) and what the tooltip did. */
export function moreRunsText(omitted: number): string {
  return `… and ${omitted.toLocaleString('en-US')} more run${omitted === 1 ? '' : 's'} (see the memory report)`;
}

/** Markdown breakdown used by the gauge tooltip (and, longer, by the report). */
export function tooltipMarkdown(sample: Sample, maxProcesses = 5, python?: PythonLines,
  extras: TooltipExtras = {}): string {
  const r = sample.ram;
  const t = sample.thresholds;
  const lines: string[] = [];
  lines.push(`**Crash Guard** — ${LEVEL_LABEL[sample.level]}`, '');
  const limit = r.limitSource === 'physical' ? 'physical RAM' : `${r.limitSource} limit`;
  lines.push(`**RAM** ${formatPercent(r.percent, 1)} (${LEVEL_LABEL[r.level]}): used ${formatBytes(r.used)}, ` +
    `available ${formatBytes(r.available)}, limit ${formatBytes(r.total)} (${limit})` +
    ` — warning ${t.ramWarningPercent}%, critical ${t.ramCriticalPercent}%`);
  if (r.swapTotal > 0) lines.push('', `Swap ${r.swapPercent.toFixed(0)}% of ${formatBytes(r.swapTotal)}`);
  if (extras.pressure) lines.push('', extras.pressure);
  lines.push('');
  if (sample.gpus.length === 0) {
    lines.push(`**GPU** none${sample.gpuReason ? ` (${markdownText(sample.gpuReason)})` : ''}`);
  } else {
    for (const g of sample.gpus) {
      lines.push(`**GPU ${g.index}** ${markdownText(g.name)}: ${formatPercent(g.percent, 1)} (${LEVEL_LABEL[g.level]}), ` +
        `${formatBytes(g.used)} of ${formatBytes(g.total)}` +
        (g.utilization !== null ? `, ${g.utilization}% busy` : ''), '');
    }
  }
  lines.push('');
  const procs = sample.topProcesses.slice(0, maxProcesses);
  if (procs.length > 0) {
    lines.push('**Heaviest processes**', '');
    for (const p of procs) lines.push(`- ${markdownText(p.name)} (${p.pid}): ${formatBytes(p.rss)}`);
    lines.push('');
  }
  lines.push(sample.runs.length > 0 ? '**Guarded runs**' : '**Guarded runs**: none', '');
  for (const run of sample.runs.slice(0, TOOLTIP_RUNS)) lines.push(runLine(run, extras.runParts?.(run)));
  const omitted = sample.runsOmitted + Math.max(0, sample.runs.length - TOOLTIP_RUNS);
  if (omitted > 0) lines.push(`- ${moreRunsText(omitted)}`);
  if (sample.runs.length > 0) lines.push('');
  if (extras.platform) lines.push(extras.platform, '');
  if (extras.transport) lines.push(extras.transport, '');
  if (sample.forecasts.length > 0) {
    lines.push('**Forecast**', '');
    for (const f of sample.forecasts) lines.push(`- ${markdownText(f.message)}`);
  } else {
    lines.push('**Forecast**: steady');
  }
  if (python) lines.push('', python.monitor, '', python.training);
  lines.push('', '_Click for the memory report._');
  return lines.join('\n');
}

export function gpuTooltipMarkdown(gpu: GpuInfo, sample: Sample): string {
  return [`**GPU ${gpu.index}** ${markdownText(gpu.name)} — ${LEVEL_LABEL[gpu.level]}`, '',
    `VRAM ${formatPercent(gpu.percent, 1)}: ${formatBytes(gpu.used)} of ${formatBytes(gpu.total)}` +
    ` — warning ${sample.thresholds.vramWarningPercent}%, critical ${sample.thresholds.vramCriticalPercent}%`,
  ].join('\n');
}

/** One-line result of an emergency cleanup, for the notification. */
export function cleanupSummary(result: CleanupResult): string {
  return messageText(cleanupParts(result));
}

function cleanupParts(result: CleanupResult): string {
  const freed = result.freed > 0 ? `freed ${formatBytes(result.freed)} of RAM` : 'freed no measurable RAM';
  const parts = [`Emergency cleanup ${freed} (used ${formatBytes(result.ramBefore)} → ${formatBytes(result.ramAfter)})`];
  if (result.sidecar) parts.push(`memory monitor ${formatBytes(result.sidecar.rssFreed)}`);
  // Ranks of one distributed run are named by rank (the result has one entry per rank).
  const distributed = new Set(result.runs.filter((r) => r.rank > 0).map((r) => r.run));
  for (const run of result.runs) {
    const name = distributed.has(run.run) ? `${run.run} rank ${run.rank}` : run.run;
    if (run.ok && run.report) {
      let text = `run ${name}: ${formatBytes(run.report.rssFreed)}`;
      if (run.report.vramFreed) text += ` + ${formatBytes(run.report.vramFreed)} VRAM`;
      parts.push(text);
    } else {
      parts.push(`run ${name}: failed (${run.error ?? 'no answer'})`);
    }
  }
  if (result.runs.length === 0) parts.push('no guarded runs');
  return parts.join('; ') + '.';
}

export function stopSummary(result: StopResult): string {
  if (!result.ok) return messageText(`Could not stop ${result.run}: ${result.message}`);
  const where = result.checkpoint ? ` Checkpoint: ${result.checkpoint}` : '';
  return messageText(`Run ${result.run} ${result.state}.${where}`);
}

/** A run's exit cause inside parentheses without nesting them (same rule as the sidecar's messages):
 *  "killed by signal 9 (SIGKILL)" → "killed by signal 9, SIGKILL";
 *  "unknown (the process ended without recording why)" → "cause unknown: the process ended without recording why". */
export function exitCauseText(cause: string): string {
  const text = cause.trim();
  if (text === 'unknown') return 'cause unknown';
  if (text.startsWith('unknown (') && text.endsWith(')')) return `cause unknown: ${text.slice('unknown ('.length, -1)}`;
  return text.replace(/\s*\(([^()]*)\)/g, ', $1');
}

/** "Run X stopped unexpectedly at step N (killed, signal 9)", as notification text. Ranks of one run are one run:
 *  no rank is named (the prompt is about the run). */
export function crashMessage(run: RunInfo, serverMessage?: string): string {
  if (serverMessage) return messageText(serverMessage.replace(/[.\s]+$/, ''));
  const at = run.step !== null ? ` at step ${run.step}` : '';
  const cause = run.exitCause ? ` (${exitCauseText(run.exitCause)})` : '';
  return messageText(`Run ${run.name} stopped unexpectedly${at}${cause}`);
}

export function crashPrompt(run: RunInfo, serverMessage?: string): string {
  const resumable = run.config !== null || run.resumeCommand !== null;
  if (!resumable) return `${crashMessage(run, serverMessage)}.`;
  return `${crashMessage(run, serverMessage)}. ${resumeOffer(run)}`;
}

/** "Resume from step 40 (12 steps, about 3 min, redone)?": the newest checkpoint and the work a resume redoes. */
export function resumeOffer(run: RunInfo): string {
  const from = run.checkpointStep ?? null;
  if (from === null) return 'Resume?';
  const steps = run.step !== null && run.step > from ? run.step - from : 0;
  if (steps === 0) return `Resume from step ${from}?`;
  const seconds = run.checkpointTime !== null && run.updated !== null && run.updated > run.checkpointTime
    ? run.updated - run.checkpointTime : null;
  const took = seconds !== null ? `, about ${durationText(seconds)}` : '';
  return `Resume from step ${from} (${steps} step${steps === 1 ? '' : 's'}${took}, redone)?`;
}

function durationText(seconds: number): string {
  return seconds < 90 ? `${Math.max(1, Math.round(seconds))} s` : `${Math.round(seconds / 60)} min`;
}

/** "Run X has made no progress for 6 min (step 120)." */
export function hungMessage(run: RunInfo): string {
  const at = run.step !== null ? ` (step ${run.step})` : '';
  return messageText(`Run ${run.name}${rankLabel(run)} has made ${stalledText(run)}${at}: it may be hung (a stuck ` +
    'DataLoader, a dead peer). Stop it with a checkpoint?');
}

/** One toast for one sample's level changes: "RAM at 83% (warning at 80%); GPU 1 at 96% (critical at 95%)". */
export function coalescedWarning(messages: readonly string[]): string {
  return messageText(`Crash Guard: ${messages.join('; ')}`);
}

/** One toast for many crashes: "3 runs stopped unexpectedly: a, b and c". */
export function crashSummary(names: readonly string[], shown = 3): string {
  const listed = names.slice(0, shown);
  const rest = names.length - listed.length;
  const list = rest > 0 ? `${listed.join(', ')} and ${rest} more` : listed.length > 1
    ? `${listed.slice(0, -1).join(', ')} and ${listed[listed.length - 1] ?? ''}` : listed.join('');
  return messageText(`${names.length} runs stopped unexpectedly: ${list}.`);
}

const PROOF_TEXT: Record<CrashProof | 'none', string> = {
  witnessed: 'Crash Guard\'s memory monitor saw this run running, then saw it die.',
  supervisor: 'The run\'s own supervisor recorded the crash.',
  none: 'Nothing proves that this run crashed as its files say: check the command before you resume.',
};

const SOURCE_TEXT: Record<ResolvedResume['source'], string> = {
  recorded: 'This is the command the run recorded in its status file; it runs as it is, without a shell.',
  relaunch: 'The run recorded crashguard without isolation; it runs isolated from the folder, with the interpreter ' +
    'it recorded.',
  train: 'crashguard train --resume auto of the run\'s config, with your training environment.',
};

/** The modal shown before Resume runs anything (the first time for each run and command): what runs, where, with
 *  which interpreter. The detail is plain text, one value a line: a value cannot forge the lines after it. */
export function resumeConfirmation(run: Pick<RunInfo, 'name' | 'dir' | 'crashProof'>, resolved: ResolvedResume):
  { message: string; detail: string } {
  const [interpreter = '', ...args] = resolved.argv;
  return {
    message: plainText(`Resume run ${run.name}?`, { max: 300 }),
    detail: [
      `Command: ${detailText(displayCommand(interpreter, args))}`,
      `Folder: ${detailText(resolved.cwd)}`,
      `Interpreter: ${detailText(interpreter)}`,
      `Run: ${detailText(run.dir)}`,
      '',
      SOURCE_TEXT[resolved.source],
      PROOF_TEXT[run.crashProof ?? 'none'],
    ].join('\n'),
  };
}

/** The modal that offers to end the processes left holding a run's lock (Resume would fail with RunLocked); with
 *  `force`, the second one, after SIGTERM left them running. */
export function lockHolderPrompt(run: Pick<RunInfo, 'name'>, holders: readonly HeldLock[], force = false):
  { message: string; detail: string } {
  const first = holders[0];
  const who = first ? `process ${first.pid}` : 'a process';
  const more = holders.length > 1 ? ` and ${holders.length - 1} more` : '';
  const lines = holders.map((h) => `pid ${h.pid}${h.rank > 0 ? ` (rank ${h.rank})` : ''}: ${detailText(h.command || '?', 300)}`);
  return {
    message: plainText(force ? `${who}${more} still holds the lock of run ${run.name} after SIGTERM. End it forcibly?`
      : `Run ${run.name} cannot resume: ${who}${more} still holds its lock. End it?`, { max: 300 }),
    detail: [...lines, '',
      'A process left over from the crashed run (e.g. a child that kept the run\'s lock) keeps Resume from starting. ' +
      (force ? 'Crash Guard sends it SIGKILL' : 'Crash Guard sends it SIGTERM') + ' through its memory monitor, which ' +
      'first proves again that this very process holds the run\'s lock file.'].join('\n'),
  };
}
