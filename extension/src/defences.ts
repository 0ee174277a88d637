// The last line of defence, as text: memory pressure (PSI), each run's OOM score and memory cgroup, and what the
// kernel's OOM killer did. Lines for the gauge tooltip and the memory report. Pure: no 'vscode' import.
import { markdownText } from './escape';
import { formatBytes, formatPercent } from './format';
import type { ProcessInfo, RunInfo, Sample } from './protocol';

/** "23% (some), 4% (full) of the last 10 s": the stalled shares of a pressure reading. */
function stalled(some: number, full: number | null, seconds: number): string {
  const fullPart = full === null ? '' : `, ${formatPercent(full)} (full)`;
  return `${formatPercent(some)} (some)${fullPart} of the last ${Math.round(seconds)} s`;
}

/** The machine's memory pressure in one line (null when the sidecar sent nothing about it: no window yet). */
export function pressureLine(sample: Sample, markdown = true): string | null {
  const bold = (t: string): string => (markdown ? `**${t}**` : t);
  const p = sample.pressure;
  if (p === null && !sample.pressureReason) return null;
  if (p === null) {
    const why = sample.pressureReason ?? 'no reading yet';
    return `${bold('Memory pressure')} n/a (${markdown ? markdownText(why) : why})`;
  }
  const t = sample.thresholds;
  const limits = ` — warning at ${t.pressureSomePercent}% (some) / ${t.pressureFullPercent}% (full)`;
  const level = p.level === 'warning' ? (markdown ? ' (**warning**)' : ' (warning)') : '';
  return `${bold('Memory pressure')}: stalled ${stalled(p.some, p.full, p.seconds)}${level}${limits}`;
}

/** What a run's own defences say, as short parts of its line: its OOM score and its memory cgroup. */
export function runDefenceParts(run: RunInfo): string[] {
  const parts: string[] = [];
  if (run.oomScoreAdj !== null) parts.push(`oom_score_adj ${run.oomScoreAdj}`);
  const m = run.memory;
  if (m) {
    const of = m.max !== null ? ` of ${formatBytes(m.max)}` : '';
    const high = m.high !== null ? `, high ${formatBytes(m.high)}` : '';
    parts.push(`cgroup ${formatBytes(m.workingSet)}${of}${high}`);
    if (m.overHigh) parts.push(`over its high mark ${m.overHigh}×`);
    if (m.highEvents) parts.push(`throttled ${m.highEvents}×`);
    if (m.pressureSome !== null && m.pressureSome >= 1) parts.push(`stalled ${formatPercent(m.pressureSome)}`);
    if (m.maxEvents) parts.push(`hit its limit ${m.maxEvents}×`);
    if (m.oomKills) parts.push(`${m.oomKills} OOM kill${m.oomKills > 1 ? 's' : ''} in its group`);
  }
  return parts;
}

/** "python3 (4242) 1.2 GiB, code (100) 900 MiB": the heaviest processes, for a crash notice. */
export function heaviestText(processes: readonly ProcessInfo[], max = 3): string {
  return processes.slice(0, max).map((p) => `${p.name} (${p.pid}) ${formatBytes(p.rss)}`).join(', ');
}

/** Whether a run's exit cause says the kernel's OOM killer took it. */
export function killedByOomKiller(run: Pick<RunInfo, 'exitCause'>): boolean {
  return run.exitCause?.includes("killed by the kernel's OOM killer") ?? false;
}

/** The memory report's summary lines: the machine's pressure, then each run's defences. */
export function reportDefenceLines(sample: Sample | undefined): string[] {
  if (!sample) return [];
  const lines: string[] = [];
  const pressure = pressureLine(sample, false);
  if (pressure) lines.push(pressure);
  for (const run of sample.runs) {
    const parts = runDefenceParts(run);
    const rank = run.worldSize > 1 ? ` rank ${run.rank}/${run.worldSize}` : '';
    if (killedByOomKiller(run)) parts.push('killed by the kernel\'s OOM killer');
    if (parts.length > 0) lines.push(`Run ${run.name}${rank}: ${parts.join(', ')}`);
  }
  return lines;
}
