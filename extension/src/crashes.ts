// Which crashed runs to ask about, and how to resume one. Pure: no 'vscode' import.
// A crash is asked about every time the sidecar starts (and when it happens) until the user answered it, so a
// prompt survives restarts of the sidecar and of the window; crashes older than the age cap, and runs the user
// said "don't ask again" about, are left alone.
import { resumeDefinition, runsDirOf, type CrashGuardTaskDefinition } from './cli';
import { OLD_MODULE, recordedLaunch } from './isolation';
import type { RunInfo } from './protocol';

/** Crashes older than this are history, not news. */
export const MAX_CRASH_AGE_SECONDS = 3 * 24 * 3600;

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

export function shouldAsk(run: RunInfo, memory: CrashMemory, nowSeconds: number,
  maxAgeSeconds = MAX_CRASH_AGE_SECONDS): boolean {
  if (run.state !== 'crashed' || run.alive) return false;
  if (memory.neverAsk.includes(run.dir) || memory.answered.includes(crashKey(run))) return false;
  const when = run.updated ?? run.started ?? null;
  return when !== null && nowSeconds - when <= maxAgeSeconds;
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
