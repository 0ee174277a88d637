// Arguments for the crashguard CLI in the user's training environment (what follows the isolated start of
// isolation.ts: `python -I -m crashguard <these>`), and the task definitions the extension runs. Pure: no 'vscode'
// import.
import type { RunInfo } from './protocol';

export const SAFE_TRAINING_CONFIG = 'config/safe_training.json';
/** A Crash Guard training config, relative to a workspace folder; shallow, so a big repository is not searched. */
export const TRAINING_CONFIG_GLOB = '{config/safe_training*.json,config/*.crashguard.json,*.crashguard.json}';
// F5 runs the trainer unsupervised so the debugger is in the training process itself (breakpoints hit).
export const SAFE_TRAINING_DEBUG_ARGS = ['train', '--config', SAFE_TRAINING_CONFIG, '--no-supervise'];

export type TaskCommand = 'monitor' | 'cleanup' | 'train' | 'resume';

/** The `crashGuard` task definition (package.json `taskDefinitions`). */
export interface CrashGuardTaskDefinition {
  type: 'crashGuard';
  command: TaskCommand;
  config?: string;
  resume?: string;
  runName?: string;
  runsDir?: string;
  interval?: number;
  /** resume: the run's folder (RunInfo.dir); the run's recorded resume command is run. */
  runDir?: string;
}

/** The crashguard arguments of a task (`resume` has none: the run recorded its own command). */
export function taskArgs(def: CrashGuardTaskDefinition): string[] {
  const args: string[] = [def.command];
  switch (def.command) {
    case 'monitor':
      if (def.interval !== undefined) args.push('--interval', String(def.interval));
      break;
    case 'cleanup':
      if (def.runsDir) args.push('--runs-dir', def.runsDir);
      break;
    case 'train':
      args.push('--config', def.config ?? SAFE_TRAINING_CONFIG);
      if (def.runName) args.push('--run-name', def.runName);
      if (def.resume) args.push('--resume', def.resume);
      if (def.runsDir) args.push('--runs-dir', def.runsDir);
      break;
    case 'resume':
      throw new Error('a resume task runs the command its run recorded');
  }
  return args;
}

/** The tasks a folder that trains with Crash Guard offers ("Run Task"), for its absolute runs directory. */
export function folderTaskDefinitions(runsDir: string): CrashGuardTaskDefinition[] {
  return [
    { type: 'crashGuard', command: 'monitor' },
    cleanupDefinition(runsDir),
    trainDefinition(runsDir),
  ];
}

/** Emergency Cleanup while the memory monitor is down: the CLI reaches the runs through their control folders. */
export function cleanupDefinition(runsDir: string): CrashGuardTaskDefinition {
  return { type: 'crashGuard', command: 'cleanup', runsDir };
}

/** "Start Safe Training": the folder's starter config, registering in its runs directory. */
export function trainDefinition(runsDir: string): CrashGuardTaskDefinition {
  return { type: 'crashGuard', command: 'train', config: SAFE_TRAINING_CONFIG, runsDir };
}

/** Task definition that resumes a crashed/stopped run from its last checkpoint; undefined without a config. */
export function resumeDefinition(run: RunInfo, runsDir?: string): CrashGuardTaskDefinition | undefined {
  if (!run.config) return undefined;
  const def: CrashGuardTaskDefinition = { type: 'crashGuard', command: 'train', config: run.config,
    runName: run.name, resume: 'auto' };
  if (runsDir) def.runsDir = runsDir;
  return def;
}

/** The runs directory a run lives in (its dir's parent), from RunInfo.dir. */
export function runsDirOf(run: Pick<RunInfo, 'dir'>): string | undefined {
  const dir = run.dir.replace(/[\\/]+$/, '');
  const cut = Math.max(dir.lastIndexOf('/'), dir.lastIndexOf('\\'));
  return cut > 0 ? dir.slice(0, cut) : undefined;
}

/** Quotes an argv for display in logs (never passed to a shell). */
export function displayCommand(python: string, args: readonly string[]): string {
  return [python, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}
