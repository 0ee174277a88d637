// Crash recovery: a run that died (crashGuard/runEvent "crashed", or a crashed RunInfo in the runs the extension
// asks for every time the sidecar starts) gets a prompt "Run X stopped unexpectedly at step N (...). Resume?"
// until the user answers it (crashes.ts decides which). Resume runs in the run's own folder, trusted only.
import * as vscode from 'vscode';
import { crashKey, resumePlan, shouldAsk, type CrashMemory } from './crashes';
import { crashPrompt } from './format';
import { crashguardProcess, OLD_MODULE } from './isolation';
import type { Log } from './logger';
import type { RunEventParams, RunInfo } from './protocol';
import { runProcessTask, runTask, type TaskDeps } from './tasks';

const ANSWERED_KEY = 'crashGuard.answeredCrashes';
const NEVER_ASK_KEY = 'crashGuard.neverAskRuns';
const MAX_REMEMBERED = 200;
export const ACTION_RESUME = 'Resume';
export const ACTION_NEVER = 'Don\'t Ask Again for This Run';

export class Recovery {
  private readonly showing = new Set<string>();

  constructor(private readonly log: Log, private readonly state: vscode.Memento, private readonly tasks: TaskDeps,
    private readonly showNotifications: () => boolean) {}

  private memory(): CrashMemory {
    return { answered: this.state.get<string[]>(ANSWERED_KEY, []), neverAsk: this.state.get<string[]>(NEVER_ASK_KEY, []) };
  }

  private async remember(key: string, value: string): Promise<void> {
    const list = this.state.get<string[]>(key, []);
    if (!list.includes(value)) await this.state.update(key, [...list, value].slice(-MAX_REMEMBERED));
  }

  onRunEvent(e: RunEventParams): void {
    this.log.info(`run ${e.run.name} (${e.run.dir}): ${e.event}${e.message ? ` — ${e.message}` : ''}`);
    if (e.event === 'crashed') this.offer(e.run, e.message);
  }

  /** Every run the sidecar knows, asked for each time it starts: crashes it could not report as events. */
  onRuns(runs: readonly RunInfo[]): void {
    for (const run of runs) this.offer(run);
  }

  private offer(run: RunInfo, message?: string): void {
    const key = crashKey(run);
    if (this.showing.has(key) || !shouldAsk(run, this.memory(), Date.now() / 1000)) return;
    if (!this.showNotifications()) return;
    this.showing.add(key);
    const resumable = resumePlan(run, (p) => this.folderOf(p)?.uri.fsPath).kind !== 'none';
    const actions = resumable ? [ACTION_RESUME, ACTION_NEVER] : [ACTION_NEVER];
    this.log.info(`asking about the crash of ${run.name} (${run.dir})`);
    // Answered = a choice or a dismissal; a window closed while the prompt shows asks again next time.
    void vscode.window.showWarningMessage(crashPrompt(run, message), ...actions).then(async (choice) => {
      this.showing.delete(key);
      await this.remember(ANSWERED_KEY, key);
      if (choice === ACTION_NEVER) await this.remember(NEVER_ASK_KEY, run.dir);
      if (choice === ACTION_RESUME) await this.resume(run);
    });
  }

  private folderOf(p: string): vscode.WorkspaceFolder | undefined {
    return vscode.workspace.getWorkspaceFolder(vscode.Uri.file(p));
  }

  async resume(run: RunInfo): Promise<void> {
    if (!vscode.workspace.isTrusted) {
      void vscode.window.showWarningMessage('Crash Guard resumes runs only in a trusted workspace.');
      return;
    }
    const plan = resumePlan(run, (p) => this.folderOf(p)?.uri.fsPath);
    if (plan.kind === 'none') {
      void vscode.window.showErrorMessage(`Crash Guard: cannot resume: ${plan.why}.`);
      return;
    }
    const scope = this.folderOf(run.dir) ?? vscode.TaskScope.Workspace;
    const name = `Resume ${run.name}`;
    const def = { type: 'crashGuard', command: 'resume', runDir: run.dir } as const;
    this.log.info(`resuming ${run.name} in ${plan.cwd} (${plan.kind === 'recorded' ? 'its recorded command'
      : plan.kind === 'relaunch' ? `crashguard ${plan.args.join(' ')}, recorded as -m ${plan.recordedModule}` : 'train --resume auto'})`);
    if (plan.kind === 'recorded') {
      await runProcessTask(name, plan.argv, plan.cwd, scope, def);
    } else if (plan.kind === 'relaunch') {
      // Recorded by a Crash Guard that started itself without isolation: the same arguments, started isolated.
      const choice = await this.tasks.launch(plan.interpreter);
      if (!choice.ok) {
        const older = plan.recordedModule.startsWith(OLD_MODULE) ? ` by Crash Guard before 0.1.0 (python -m ${OLD_MODULE})` : '';
        void vscode.window.showErrorMessage(`Crash Guard: cannot resume ${run.name}, recorded${older} with ` +
          `${plan.interpreter}: ${choice.why}.`, 'Set Up Crash Guard Training…')
          .then((c) => c && void vscode.commands.executeCommand('crashGuard.setUpTraining'));
        return;
      }
      const child = crashguardProcess(choice.launch, plan.args);
      await runProcessTask(name, [child.command, ...child.args], plan.cwd, scope, def, child.env);
    } else {
      await runTask(this.tasks, plan.definition, name, scope, plan.cwd);
    }
  }
}
