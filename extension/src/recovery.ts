// Crash recovery: a run that died (crashGuard/runEvent "crashed", or a RunInfo in state crashed seen on
// activation or in a sample) gets one prompt: "Run X stopped unexpectedly at step N (...). Resume?".
import * as vscode from 'vscode';
import { resumeDefinition, runsDirOf } from './cli';
import { crashPrompt } from './format';
import type { Log } from './logger';
import type { RunEventParams, RunInfo } from './protocol';
import { runTask, type TaskDeps } from './tasks';

const PROMPTED_KEY = 'crashGuard.promptedCrashes';
const MAX_REMEMBERED = 50;
export const ACTION_RESUME = 'Resume';

export class Recovery {
  private readonly inFlight = new Set<string>();

  constructor(private readonly log: Log, private readonly state: vscode.Memento, private readonly tasks: TaskDeps,
    private readonly showNotifications: () => boolean) {}

  /** Identity of one crash: the same run crashing again later is a new crash. */
  private key(run: RunInfo): string {
    return `${run.dir}#${run.pid ?? ''}#${run.step ?? ''}`;
  }

  onRunEvent(e: RunEventParams): void {
    this.log.info(`run ${e.run.name}: ${e.event}${e.message ? ` — ${e.message}` : ''}`);
    if (e.event === 'crashed') this.offer(e.run, e.message);
  }

  /** Runs from a sample or from crashGuard/runs (on activation). */
  onRuns(runs: readonly RunInfo[]): void {
    for (const run of runs) if (run.state === 'crashed') this.offer(run);
  }

  private offer(run: RunInfo, message?: string): void {
    const key = this.key(run);
    const prompted = this.state.get<string[]>(PROMPTED_KEY, []);
    if (prompted.includes(key) || this.inFlight.has(key)) return;
    this.inFlight.add(key);
    void this.state.update(PROMPTED_KEY, [...prompted, key].slice(-MAX_REMEMBERED));
    if (!this.showNotifications()) return;
    const def = resumeDefinition(run, runsDirOf(run));
    const actions = def ? [ACTION_RESUME] : [];
    void vscode.window.showWarningMessage(crashPrompt(run, message), ...actions).then(async (choice) => {
      if (choice !== ACTION_RESUME || !def) return;
      await this.resume(run);
    });
  }

  async resume(run: RunInfo): Promise<void> {
    const def = resumeDefinition(run, runsDirOf(run));
    if (!def) {
      void vscode.window.showErrorMessage(`Run ${run.name} has no config to resume from.`);
      return;
    }
    this.log.info(`resuming ${run.name} from ${run.checkpoint ?? 'its last checkpoint'}`);
    await runTask(this.tasks, def, `Resume ${run.name}`);
  }
}
