// Which crashed runs to ask about, which run "Resume Last Run" picks, and how to resume one. Pure: no 'vscode'
// import.
// A status file saying "crashed" is a claim anyone can write (issue 21): a crash is asked about only when
// something proves it (RunInfo.crashProof, contract C1: the monitor witnessed it, or the run's supervisor recorded
// it with proof), when it is dated no later than now, and for at most MAX_CRASH_AGE_SECONDS. The ranks of one run
// are one run: one crash per run folder. A crash is asked about every time the monitor starts (and when it
// happens) until the user answered it, so a prompt survives restarts of the monitor and of the window; runs the
// user said "don't ask again" about are left alone.
import { resumeDefinition, runsDirOf, type CrashGuardTaskDefinition } from './cli';
import { OLD_MODULE, recordedLaunch } from './isolation';
import type { CrashProof, RunInfo } from './protocol';

/** Crashes older than this are history, not news. */
export const MAX_CRASH_AGE_SECONDS = 3 * 24 * 3600;
/** A run's clock and ours may differ this much; a time further ahead is a claim from the future: refused. */
export const FUTURE_TOLERANCE_SECONDS = 120;

/** One crash of one run (the same run crashing again later, at another step or pid, is a new crash). */
export function crashKey(run: Pick<RunInfo, 'dir' | 'pid' | 'step'>): string {
  return `${run.dir}#${run.pid ?? ''}#${run.step ?? ''}`;
}

export interface CrashMemory {
  /** Crashes the user answered (Resume, dismissed, or "don't ask again"). */
  answered: readonly string[];
  /** Run folders the user never wants to be asked about. */
  neverAsk: readonly string[];
}

/** When the run last said anything (its latest `updated`/`started`), or null: none, or one in the future. */
export function lastHeard(run: Pick<RunInfo, 'updated' | 'started'>, nowSeconds: number): number | null {
  const times = [run.updated, run.started].filter((t): t is number => t !== null);
  if (times.length === 0 || times.some((t) => t > nowSeconds + FUTURE_TOLERANCE_SECONDS)) return null;
  return Math.max(...times);
}

/** A crash to ask about: one run (all its ranks), shown as its lowest crashed rank. */
export interface Crash {
  /** Its crashed ranks' crashKeys: answering one answers the run, whichever ranks the monitor reported. */
  keys: string[];
  dir: string;
  run: RunInfo;
  proof: CrashProof;
  /** When it was last heard of (seconds). */
  when: number;
  /** The server's message for it (a live crashGuard/runEvent), if any. */
  message?: string;
}

/** The ranks of each run folder, lowest rank first. */
function byRunDir(runs: readonly RunInfo[]): Map<string, RunInfo[]> {
  const dirs = new Map<string, RunInfo[]>();
  for (const run of runs) dirs.set(run.dir, [...(dirs.get(run.dir) ?? []), run]);
  for (const ranks of dirs.values()) ranks.sort((a, b) => a.rank - b.rank);
  return dirs;
}

/** The crashes among `runs` to ask about: proved (C1), dated, within the age cap, unanswered; one per run folder
 *  (none while any rank of it is alive), most recent first. */
export function crashesToAsk(runs: readonly RunInfo[], memory: CrashMemory, nowSeconds: number,
  maxAgeSeconds = MAX_CRASH_AGE_SECONDS): Crash[] {
  const out: Crash[] = [];
  for (const [dir, ranks] of byRunDir(runs)) {
    if (ranks.some((r) => r.alive) || memory.neverAsk.includes(dir)) continue;
    const run = ranks.find((r) => r.state === 'crashed' && r.crashProof !== null);
    if (!run?.crashProof) continue;
    const when = lastHeard(run, nowSeconds);
    if (when === null || nowSeconds - when > maxAgeSeconds) continue;
    const keys = ranks.filter((r) => r.state === 'crashed').map(crashKey);
    if (keys.some((k) => memory.answered.includes(k))) continue;
    out.push({ keys, dir, run, proof: run.crashProof, when });
  }
  return out.sort((a, b) => b.when - a.when);
}

/** "Resume Last Run": a run that ended without finishing (crashed, stopped, failed) and can be resumed, one per run
 *  folder, never one dated in the future. A proved crash comes before any unproved run, then the most recent. */
export function lastResumableRun(runs: readonly RunInfo[], nowSeconds: number): RunInfo | undefined {
  const candidates: { run: RunInfo; when: number; proved: boolean }[] = [];
  for (const ranks of byRunDir(runs).values()) {
    if (ranks.some((r) => r.alive)) continue;
    const run = ranks.find((r) => (r.state === 'crashed' || r.state === 'stopped' || r.state === 'failed') &&
      (r.config !== null || r.resumeCommand !== null));
    if (!run) continue;
    const when = lastHeard(run, nowSeconds);
    if (when === null) continue;
    candidates.push({ run, when, proved: run.state === 'crashed' && run.crashProof !== null });
  }
  candidates.sort((a, b) => Number(b.proved) - Number(a.proved) || b.when - a.when);
  return candidates[0]?.run;
}

/** A process left holding one rank's lock of an ended run (that rank's RunInfo.lockHolder in crashGuard/runs, given
 *  for a proven crash: a stray child of a C-level fork): Resume fails with RunLocked until it ends. */
export interface HeldLock {
  rank: number;
  pid: number;
  /** Its command line, as the monitor read it (shown before anything is signalled). */
  command: string;
}

/** The processes holding the locks of one run, from its ranks' RunInfos (lowest rank first, each rank and pid once). */
export function heldLocks(ranks: readonly RunInfo[]): HeldLock[] {
  const held: HeldLock[] = [];
  for (const r of [...ranks].sort((a, b) => a.rank - b.rank)) {
    const holder = r.lockHolder;
    if (holder && !held.some((h) => h.rank === r.rank && h.pid === holder.pid)) {
      held.push({ rank: r.rank, pid: holder.pid, command: holder.command });
    }
  }
  return held;
}

export type ResumePlan =
  /** Contract 9: the argv the run recorded (argv[0] is its interpreter), run in its cwd without a shell. */
  | { kind: 'recorded'; argv: string[]; cwd: string }
  /** A command recorded by Crash Guard before it started itself isolated (`python -m crashguard …`, or
   *  `python -m python_backend …` before 0.1.0): `crashguard <args>` with that interpreter, started isolated
   *  (isolation.ts), in its cwd. */
  | { kind: 'relaunch'; interpreter: string; args: string[]; cwd: string; recordedModule: string }
  /** A run of a backend that records no command: `train --resume auto` of its config, with the training interpreter. */
  | { kind: 'train'; definition: CrashGuardTaskDefinition; cwd: string }
  | { kind: 'none'; why: string };

/** How to resume `run`; `folderOf` gives the workspace folder a path belongs to (the run's folder is its cwd). */
export function resumePlan(run: RunInfo, folderOf: (path: string) => string | undefined): ResumePlan {
  const recorded = run.resumeCommand;
  if (recorded && recorded.argv.length > 0) {
    const how = recordedLaunch(recorded.argv);
    if (how.kind === 'unisolated') {
      return { kind: 'relaunch', interpreter: how.interpreter, args: how.args, cwd: recorded.cwd, recordedModule: how.module };
    }
    if (how.kind === 'torchrun') {
      return { kind: 'none', why: `run ${run.name} was recorded as torchrun … -m ${how.module}, which starts every rank ` +
        `with its folder first on the import path${how.module.startsWith(OLD_MODULE) ? ' (and by the name Crash Guard had before 0.1.0)' : ''}; ` +
        `resume it from a terminal in ${recorded.cwd} as torchrun … --no-python <python> -I -m crashguard train … --resume auto ` +
        '(docs/distributed.md)' };
    }
    return { kind: 'recorded', argv: [...recorded.argv], cwd: recorded.cwd };
  }
  const definition = resumeDefinition(run, runsDirOf(run));
  const cwd = folderOf(run.dir) ?? runsDirOf(run);
  if (!definition || !cwd) return { kind: 'none', why: `run ${run.name} recorded no resume command and no config` };
  return { kind: 'train', definition, cwd };
}

/** What Resume will run, exactly: shown to the user before it runs, and then run as it is (no shell). */
export interface ResolvedResume {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  /** Where the command comes from, for the confirmation. */
  source: 'recorded' | 'relaunch' | 'train';
}

/** The same run with the same command in the same folder: confirmed once, not asked again. A changed command (a
 *  status file rewritten since) is a new one. */
export function confirmationKey(dir: string, resolved: Pick<ResolvedResume, 'argv' | 'cwd'>): string {
  return JSON.stringify([dir, resolved.cwd, resolved.argv]);
}
