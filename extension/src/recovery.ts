// Crash recovery: a run that died (crashGuard/runEvent "crashed", or a crashed RunInfo in the runs the extension
// asks for every time the monitor starts) gets a prompt "Run X stopped unexpectedly at step N (...). Resume?" until
// the user answers it (crashes.ts decides which: proved crashes only, contract C1). Crashes that arrive together are
// one toast ("3 runs stopped unexpectedly: …", Show… lists them). Resume runs only what the user saw and chose: the
// command, its folder and its interpreter are shown in a modal before anything runs, the first time for each run
// and command; then exactly that argv runs, without a shell, in a trusted workspace only. A process left holding the
// run's lock (Resume would fail with RunLocked) is named (RunInfo.lockHolder of a fresh crashGuard/runs), and ended
// after a prompt through the monitor (crashGuard/endLockHolder), which proves again that it holds the lock and
// signals it through a pidfd: SIGTERM, then SIGKILL only after a second choice ("End Forcibly").
import * as vscode from 'vscode';
import type { Checker } from './check';
import { taskArgs } from './cli';
import {
  confirmationKey, crashesToAsk, heldLocks, resumePlan, type Crash, type CrashMemory, type HeldLock, type ResolvedResume,
} from './crashes';
import { messageText } from './escape';
import { crashPrompt, crashSummary, exitCauseText, lockHolderPrompt, resumeConfirmation } from './format';
import { crashguardProcess, OLD_MODULE } from './isolation';
import type { Log } from './logger';
import {
  EndHolderResult, METHOD_END_LOCK_HOLDER, METHOD_RUNS, RunsResult, type EndLockHolderParams, type RunEventParams,
  type RunInfo,
} from './protocol';
import { runProcessTask, type TaskDeps } from './tasks';

const ANSWERED_KEY = 'crashGuard.answeredCrashes';
const NEVER_ASK_KEY = 'crashGuard.neverAskRuns';
const CONFIRMED_KEY = 'crashGuard.confirmedResumes';
const MAX_REMEMBERED = 200;
/** Crashes reported within this window are one prompt (the sidecar reports a run's ranks, or a batch, together). */
const GATHER_MS = 300;
export const ACTION_RESUME = 'Resume';
export const ACTION_NEVER = 'Don\'t Ask Again for This Run';
export const ACTION_SHOW = 'Show…';
export const ACTION_NEVER_ALL = 'Don\'t Ask Again for These Runs';
export const ACTION_CONFIRM = 'Resume';
export const ACTION_END = 'End Process';
export const ACTION_FORCE = 'End Forcibly';

/** A request to the memory monitor, its answer checked (sidecar.ts). */
export type MonitorRequest = <R>(method: string, params: unknown, result: Checker<R>) => Promise<R>;

export class Recovery implements vscode.Disposable {
  private readonly showing = new Set<string>();
  private pending = new Map<string, Crash>();
  private timer: NodeJS.Timeout | undefined;
  /** Resume tasks started here, by execution: a failed one may have met a stray lock holder. */
  private readonly started = new Map<vscode.TaskExecution, RunInfo>();
  private readonly subscription: vscode.Disposable;

  constructor(private readonly log: Log, private readonly state: vscode.Memento, private readonly tasks: TaskDeps,
    private readonly showNotifications: () => boolean, private readonly monitor?: MonitorRequest) {
    this.subscription = vscode.tasks.onDidEndTaskProcess((e) => this.onResumeEnded(e));
  }

  private memory(): CrashMemory {
    return { answered: this.state.get<string[]>(ANSWERED_KEY, []), neverAsk: this.state.get<string[]>(NEVER_ASK_KEY, []) };
  }

  private async remember(key: string, values: readonly string[]): Promise<void> {
    const list = this.state.get<string[]>(key, []);
    const fresh = values.filter((v) => !list.includes(v));
    if (fresh.length > 0) await this.state.update(key, [...list, ...fresh].slice(-MAX_REMEMBERED));
  }

  onRunEvent(e: RunEventParams): void {
    this.log.info(`run ${e.run.name} (${e.run.dir}): ${e.event}${e.message ? ` — ${e.message}` : ''}`);
    if (e.event === 'crashed') this.consider([e.run], e.message);
  }

  /** Every run the monitor knows, asked for each time it starts: crashes it could not report as events. */
  onRuns(runs: readonly RunInfo[]): void {
    this.consider(runs);
  }

  private consider(runs: readonly RunInfo[], message?: string): void {
    const crashes = crashesToAsk(runs, this.memory(), Date.now() / 1000);
    for (const crash of crashes) {
      if (crash.keys.some((k) => this.showing.has(k))) continue;
      this.pending.set(crash.dir, message ? { ...crash, message } : crash);
    }
    if (this.pending.size > 0 && !this.timer) this.timer = setTimeout(() => this.flush(), GATHER_MS);
  }

  private flush(): void {
    this.timer = undefined;
    const batch = [...this.pending.values()];
    this.pending.clear();
    if (batch.length === 0 || !this.showNotifications()) return;
    for (const crash of batch) for (const k of crash.keys) this.showing.add(k);
    this.log.info(`asking about ${batch.length === 1 ? 'the crash' : `${batch.length} crashes`}: ` +
      batch.map((c) => `${c.run.name} (${c.dir}, ${c.proof})`).join(', '));
    // Answered = a choice or a dismissal; a window closed while the prompt shows asks again next time.
    const answered = async (): Promise<void> => {
      for (const crash of batch) for (const k of crash.keys) this.showing.delete(k);
      await this.remember(ANSWERED_KEY, batch.flatMap((c) => c.keys));
    };
    const [only] = batch;
    if (batch.length === 1 && only) {
      const resumable = resumePlan(only.run, (p) => this.folderOf(p)?.uri.fsPath).kind !== 'none';
      const actions = resumable ? [ACTION_RESUME, ACTION_NEVER] : [ACTION_NEVER];
      void vscode.window.showWarningMessage(crashPrompt(only.run, only.message), ...actions).then(async (choice) => {
        await answered();
        if (choice === ACTION_NEVER) await this.remember(NEVER_ASK_KEY, [only.dir]);
        if (choice === ACTION_RESUME) await this.resume(only.run);
      });
      return;
    }
    void vscode.window.showWarningMessage(crashSummary(batch.map((c) => c.run.name)), ACTION_SHOW, ACTION_NEVER_ALL)
      .then(async (choice) => {
        await answered();
        if (choice === ACTION_NEVER_ALL) await this.remember(NEVER_ASK_KEY, batch.map((c) => c.dir));
        if (choice === ACTION_SHOW) await this.pickAndResume(batch);
      });
  }

  /** The crashes of a summary toast, one line each; the one picked goes to Resume (and its confirmation). */
  private async pickAndResume(batch: readonly Crash[]): Promise<void> {
    const pick = await vscode.window.showQuickPick(batch.map((c) => ({
      label: messageText(c.run.name, 255),
      description: messageText(`${c.run.step !== null ? `step ${c.run.step}` : 'no step'}${c.run.exitCause
        ? `, ${exitCauseText(c.run.exitCause)}` : ''}`, 300),
      detail: messageText(c.dir, 500),
      crash: c,
    })), { title: 'Crash Guard: runs that stopped unexpectedly — resume which?', matchOnDescription: true });
    if (pick) await this.resume(pick.crash.run);
  }

  private folderOf(p: string): vscode.WorkspaceFolder | undefined {
    return vscode.workspace.getWorkspaceFolder(vscode.Uri.file(p));
  }

  /** Resume `run`: resolve the exact command, confirm it with the user, free its lock if a stray holds it, run it. */
  async resume(run: RunInfo): Promise<void> {
    if (!vscode.workspace.isTrusted) {
      void vscode.window.showWarningMessage('Crash Guard resumes runs only in a trusted workspace.');
      return;
    }
    const resolved = await this.resolve(run);
    if (!resolved) return;
    if (!await this.confirmed(run, resolved)) {
      this.log.info(`resume of ${run.name} (${run.dir}) not confirmed: nothing ran`);
      return;
    }
    if (!await this.freeLock(run)) return;
    const scope = this.folderOf(run.dir) ?? vscode.TaskScope.Workspace;
    const def = { type: 'crashGuard', command: 'resume', runDir: run.dir } as const;
    this.log.info(`resuming ${run.name} in ${resolved.cwd} (${resolved.source}): ${JSON.stringify(resolved.argv)}`);
    const execution = await runProcessTask(`Resume ${run.name}`, resolved.argv, resolved.cwd, scope, def, resolved.env);
    this.started.set(execution, run);
  }

  /** The argv, folder and environment Resume runs for `run`, or undefined after saying why there is none. */
  private async resolve(run: RunInfo): Promise<ResolvedResume | undefined> {
    const plan = resumePlan(run, (p) => this.folderOf(p)?.uri.fsPath);
    if (plan.kind === 'none') {
      void vscode.window.showErrorMessage(messageText(`Crash Guard: cannot resume: ${plan.why}.`));
      return undefined;
    }
    if (plan.kind === 'recorded') return { argv: plan.argv, cwd: plan.cwd, env: {}, source: 'recorded' };
    // Recorded by a Crash Guard that started itself without isolation (relaunch), or no command recorded (train):
    // crashguard of the training environment (or of the recorded interpreter), started isolated.
    const choice = await this.tasks.launch(plan.kind === 'relaunch' ? plan.interpreter : undefined);
    if (!choice.ok) {
      const older = plan.kind === 'relaunch' && plan.recordedModule.startsWith(OLD_MODULE)
        ? ` by Crash Guard before 0.1.0 (python -m ${OLD_MODULE})` : '';
      const recorded = plan.kind === 'relaunch' ? `, recorded${older} with ${plan.interpreter}` : '';
      void vscode.window.showErrorMessage(messageText(`Crash Guard: cannot resume ${run.name}${recorded}: ${choice.why}.`),
        'Set Up Crash Guard Training…').then((c) => c && void vscode.commands.executeCommand('crashGuard.setUpTraining'));
      return undefined;
    }
    const child = crashguardProcess(choice.launch, plan.kind === 'relaunch' ? plan.args : taskArgs(plan.definition));
    return { argv: [child.command, ...child.args], cwd: plan.cwd, env: child.env, source: plan.kind };
  }

  /** The user saw the command, its folder and interpreter and chose Resume (asked the first time for each run and
   *  command: the same command again runs without asking). */
  private async confirmed(run: RunInfo, resolved: ResolvedResume): Promise<boolean> {
    const key = confirmationKey(run.dir, resolved);
    if (this.state.get<string[]>(CONFIRMED_KEY, []).includes(key)) return true;
    const { message, detail } = resumeConfirmation(run, resolved);
    const choice = await vscode.window.showWarningMessage(message, { modal: true, detail }, ACTION_CONFIRM);
    if (choice !== ACTION_CONFIRM) return false;
    await this.remember(CONFIRMED_KEY, [key]);
    return true;
  }

  /** The run's ranks as the monitor knows them now (a fresh crashGuard/runs: a proven crash's ranks name the process
   *  still holding their lock, RunInfo.lockHolder); undefined without a monitor or an answer (Resume then meets
   *  RunLocked, whose message names the holder). */
  private async ranksNow(run: RunInfo): Promise<RunInfo[] | undefined> {
    if (!this.monitor) return undefined;
    try {
      const { runs } = await this.monitor(METHOD_RUNS, {}, RunsResult);
      return runs.filter((r) => r.dir === run.dir);
    } catch (error) {
      this.log.warn(`could not ask the monitor who holds the lock of ${run.name}: ${String(error)}`);
      return undefined;
    }
  }

  /** True when nothing holds the run's lock any more (or nobody can tell); false when Resume must not start. */
  private async freeLock(run: RunInfo): Promise<boolean> {
    const ranks = await this.ranksNow(run);
    if (!ranks) return true;
    const live = ranks.find((r) => r.alive);
    if (live) {
      void vscode.window.showWarningMessage(messageText(`Crash Guard: run ${run.name} is running (pid ${live.pid ?? '?'}): ` +
        'it cannot be resumed. Stop it first (Stop Training).'));
      return false;
    }
    const held = heldLocks(ranks);
    return held.length === 0 || this.endHolders(run, held);
  }

  /** Asks, then ends each holder through the monitor: SIGTERM; SIGKILL only after a second choice, for those SIGTERM
   *  left running. True once every one has exited. */
  private async endHolders(run: RunInfo, held: readonly HeldLock[]): Promise<boolean> {
    const monitor = this.monitor;
    if (!monitor) return true;
    let left = [...held];
    for (const force of [false, true]) {
      const { message, detail } = lockHolderPrompt(run, left, force);
      const choice = await vscode.window.showWarningMessage(message, { modal: true, detail }, force ? ACTION_FORCE : ACTION_END);
      if (choice === undefined) {
        this.log.info(`left the holders of ${run.name}'s lock running: ${left.map((h) => h.pid).join(', ')}`);
        return false;
      }
      const still: HeldLock[] = [];
      for (const holder of left) {
        const params: EndLockHolderParams = { dir: run.dir, pid: holder.pid, rank: holder.rank, force };
        let result: EndHolderResult;
        try {
          result = await monitor(METHOD_END_LOCK_HOLDER, params, EndHolderResult);
        } catch (error) {
          void vscode.window.showErrorMessage(messageText(`Crash Guard: could not end process ${holder.pid}: ${String(error)}`));
          return false;
        }
        this.log.info(`end lock holder ${holder.pid} of ${run.name} (rank ${holder.rank})${force ? ' (SIGKILL)' : ''}: ` +
          result.message);
        if (result.ok) continue;
        if (!result.signalled) {
          void vscode.window.showErrorMessage(messageText(`Crash Guard: could not end process ${holder.pid}: ${result.message}`));
          return false;
        }
        still.push(holder); // signalled and still running: SIGTERM ignored (or not yet acted on)
      }
      if (still.length === 0) return true;
      left = still;
    }
    void vscode.window.showErrorMessage(messageText(`Crash Guard: run ${run.name}'s lock is still held by process ` +
      `${left.map((h) => h.pid).join(', ')}.`));
    return false;
  }

  /** A Resume that failed (e.g. RunLocked: a stray process kept the lock): name the holder, offer to end it and
   *  resume again. */
  private onResumeEnded(e: vscode.TaskProcessEndEvent): void {
    const run = this.started.get(e.execution);
    if (!run) return;
    this.started.delete(e.execution);
    if (e.exitCode === 0 || e.exitCode === undefined) return;
    void this.ranksNow(run).then(async (ranks) => {
      const held = ranks && !ranks.some((r) => r.alive) ? heldLocks(ranks) : [];
      if (held.length === 0) return;
      this.log.warn(`resume of ${run.name} exited ${String(e.exitCode)}; its lock is held by ${held.map((h) => h.pid).join(', ')}`);
      if (await this.endHolders(run, held)) await this.resume(run);
    });
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.subscription.dispose();
  }
}
