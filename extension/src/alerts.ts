// What a threshold toast says and offers, and which run its actions act on. Pure: no 'vscode' import.
//
// A toast carries at most three short actions, so VS Code never cuts them ("Emergenc…"): Clean Up, Stop Run and,
// at a warning, Don't Warn Again; everything else is in the memory report, which the toast's text links to. "Stop Run" acts on the heaviest live run for the resource the
// toast is about (RAM: the run's tree RSS, a GPU: its VRAM, all ranks of a distributed run together); when another
// run is close to it (within CLOSE_FRACTION), picking one for the user would be a guess, so it asks which
// ("Stop Run…", a quick pick of the close ones, heaviest first). "Don't Warn Again" silences that same run only
// (or asks which, the same way): a warning is skipped only while every run it names is silenced.
import { messageText } from './escape';
import { coalescedWarning, formatBytes } from './format';
import { rank } from './levels';
import { TEXT_LIMITS, type RunInfo, type WarningParams } from './protocol';

export const ACTION_CLEANUP = 'Clean Up';
export const ACTION_STOP = 'Stop Run';
export const ACTION_STOP_WHICH = 'Stop Run…';
export const ACTION_SILENCE = 'Don\'t Warn Again';
export const ACTION_SILENCE_WHICH = 'Don\'t Warn Again…';
export const MAX_TOAST_ACTIONS = 3;
/** A run using at least this share of the heaviest run's memory is "close": Stop and silence ask which. */
export const CLOSE_FRACTION = 0.8;
export const REPORT_COMMAND = 'crashGuard.showReport';

/** One live run: every live rank of one run folder together. */
export interface LiveRun {
  /** Its identity for "don't warn again": folder and main process (a later run of the same name is new). */
  key: string;
  name: string;
  dir: string;
  /** The rank the run is stopped through (rank 0, else the lowest live rank). */
  main: RunInfo;
  ranks: RunInfo[];
  /** Tree RSS and VRAM summed over its live ranks (bytes; unknown counts as 0). */
  ram: number;
  vram: number;
}

export function runKey(run: Pick<RunInfo, 'dir' | 'pid'>): string {
  return `${run.dir}#${run.pid ?? ''}`;
}

/** The live runs of a sample, one per run folder (the ranks of a torchrun job are one run). */
export function liveRuns(runs: readonly RunInfo[]): LiveRun[] {
  const byDir = new Map<string, RunInfo[]>();
  for (const r of runs) {
    if (!r.alive) continue;
    byDir.set(r.dir, [...byDir.get(r.dir) ?? [], r]);
  }
  return [...byDir.values()].map((ranks) => {
    const main = ranks.reduce((a, b) => (b.rank < a.rank ? b : a));
    return {
      key: runKey(main), name: main.name, dir: main.dir, main, ranks,
      ram: ranks.reduce((sum, r) => sum + (r.treeRss ?? 0), 0),
      vram: ranks.reduce((sum, r) => sum + (r.vram ?? 0), 0),
    };
  });
}

/** The memory of `run` that matters for `resource` ("RAM", "GPU 1", "Memory pressure", …). */
export function memoryFor(run: LiveRun, resource: string): number {
  return /^GPU\b/.test(resource) ? run.vram : run.ram;
}

export type Target =
  | { kind: 'none' }
  | { kind: 'one'; run: LiveRun }
  /** Several runs close to the heaviest: the user picks (heaviest first). */
  | { kind: 'ask'; runs: LiveRun[] };

/** The heaviest of `runs` for `resource`, or every run close to it when there is no clear heaviest. */
export function heaviest(runs: readonly LiveRun[], resource: string): Target {
  if (runs.length === 0) return { kind: 'none' };
  const sorted = [...runs].sort((a, b) => memoryFor(b, resource) - memoryFor(a, resource));
  const top = memoryFor(sorted[0] as LiveRun, resource);
  const close = sorted.filter((r) => memoryFor(r, resource) >= top * CLOSE_FRACTION);
  return close.length === 1 ? { kind: 'one', run: close[0] as LiveRun } : { kind: 'ask', runs: close };
}

function runsText(target: Target, resource: string): string {
  const one = (r: LiveRun): string => {
    const bytes = memoryFor(r, resource);
    // A run's name comes from a runs folder (hostile input): notification text, never a link (escape.ts).
    return `${messageText(r.name, TEXT_LIMITS.name)}${bytes > 0 ? ` (${formatBytes(bytes)})` : ''}`;
  };
  if (target.kind === 'one') return ` Heaviest run: ${one(target.run)}.`;
  if (target.kind === 'ask') return ` Runs using about the same: ${target.runs.map(one).join(', ')}.`;
  return '';
}

export interface ToastPlan {
  severity: 'warning' | 'error';
  text: string;
  /** At most MAX_TOAST_ACTIONS short labels, in order. */
  actions: string[];
  /** What "Stop Run" acts on (asks which when `ask`). */
  stop: Target;
  /** What "Don't Warn Again" silences (none at critical: critical always notifies). */
  silence: Target;
}

/**
 * The toast for one sample's level changes (`shown`, as WarningPolicy let them through; at least one).
 * `live`: the sample's live runs; `silenced`: the runs the user asked not to be warned about. At a warning the
 * silenced runs are left out of the choice (the toast is about the others); at critical every run counts.
 */
export function toastPlan(shown: readonly WarningParams[], live: readonly LiveRun[],
  silenced: (run: LiveRun) => boolean): ToastPlan {
  const worstFirst = [...shown].sort((a, b) => rank(b.level) - rank(a.level));
  const critical = worstFirst.some((w) => w.level === 'critical');
  const resource = worstFirst[0]?.resource ?? 'RAM';
  const names = new Set(shown.flatMap((w) => w.runs));
  const named = live.filter((r) => names.size === 0 || names.has(r.name));
  const candidates = critical ? named : named.filter((r) => !silenced(r));
  const stop = heaviest(candidates.length > 0 ? candidates : named, resource);
  const silence: Target = critical ? { kind: 'none' } : heaviest(candidates, resource);
  const actions = [ACTION_CLEANUP];
  if (stop.kind !== 'none') actions.push(stop.kind === 'one' ? ACTION_STOP : ACTION_STOP_WHICH);
  if (silence.kind !== 'none') actions.push(silence.kind === 'one' ? ACTION_SILENCE : ACTION_SILENCE_WHICH);
  const said = coalescedWarning(worstFirst.map((w) => w.message)).replace(/\.?$/, '.');
  const text = `${said}${runsText(stop, resource)} [Memory report](command:${REPORT_COMMAND})`;
  return { severity: critical ? 'error' : 'warning', text, actions: actions.slice(0, MAX_TOAST_ACTIONS), stop, silence };
}
