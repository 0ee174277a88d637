// Task provider for the `crashGuard` task type: the monitor, the emergency cleanup and safe training, offered only
// in folders that train with Crash Guard (folders.ts), never as a default build task; the same definitions resume
// a crashed run in its own folder. Every task starts crashguard isolated from its folder (isolation.ts).
import * as vscode from 'vscode';
import { displayCommand, folderTaskDefinitions, taskArgs, type CrashGuardTaskDefinition } from './cli';
import { resumePlan } from './crashes';
import { crashguardProcess, type CrashguardLaunch, type LaunchChoice } from './isolation';
import type { Log } from './logger';
import type { RunInfo } from './protocol';

export const TASK_TYPE = 'crashGuard';

const LABELS: Record<CrashGuardTaskDefinition['command'], string> = {
  monitor: 'Start Memory Monitor',
  cleanup: 'Emergency Cleanup',
  train: 'Safe Training (Low Memory)',
  resume: 'Resume Run',
};

export interface TaskDeps {
  log: Log;
  /** How crashguard starts in the training environment (crashguard[train]), or in `python`: probed now. */
  launch(python?: string): Promise<LaunchChoice>;
  /** Workspace folders that train with Crash Guard (a config or runs folder, or set up on request). */
  trainingFolders(): vscode.WorkspaceFolder[];
  /** The folder for a command without a run: the active editor's, else the first training folder. */
  folder(): vscode.WorkspaceFolder | undefined;
  /** The folder's absolute runs directory. */
  runsDirectory(folder: vscode.WorkspaceFolder): string;
  /** The runs of the latest sample (for resume tasks). */
  runs(): RunInfo[];
}

function presented(task: vscode.Task, detail: string): vscode.Task {
  task.detail = detail;
  task.presentationOptions = { reveal: vscode.TaskRevealKind.Always, panel: vscode.TaskPanelKind.Dedicated };
  task.isBackground = false;
  return task; // no group: training is never a build (Ctrl+Shift+B) or test task
}

/** A task that runs `argv` as it is (argv[0] is the program), in `cwd`, without a shell. */
export function processTask(name: string, argv: readonly string[], cwd: string,
  scope: vscode.WorkspaceFolder | vscode.TaskScope, def: CrashGuardTaskDefinition, env?: Record<string, string>): vscode.Task {
  const [program = '', ...args] = argv;
  const execution = new vscode.ProcessExecution(program, args, env && Object.keys(env).length > 0 ? { cwd, env } : { cwd });
  const task = new vscode.Task(def, scope, name, 'Crash Guard', execution);
  return presented(task, displayCommand(program, args));
}

export function buildTask(def: CrashGuardTaskDefinition, launch: CrashguardLaunch,
  scope: vscode.WorkspaceFolder | vscode.TaskScope, name?: string, cwd?: string): vscode.Task {
  const dir = cwd ?? (typeof scope === 'object' ? scope.uri.fsPath : undefined);
  const child = crashguardProcess(launch, taskArgs(def));
  const options: vscode.ProcessExecutionOptions = {};
  if (dir) options.cwd = dir;
  if (Object.keys(child.env).length > 0) options.env = child.env;
  const task = new vscode.Task(def, scope, name ?? LABELS[def.command], 'Crash Guard',
    new vscode.ProcessExecution(child.command, child.args, options));
  return presented(task, displayCommand(child.command, child.args));
}

/** The training environment's launch, or undefined after saying why it cannot start crashguard. */
export async function launchOrSay(deps: TaskDeps, python?: string): Promise<CrashguardLaunch | undefined> {
  const choice = await deps.launch(python);
  if (choice.ok) return choice.launch;
  deps.log.warn(`cannot start crashguard: ${choice.why}`);
  void vscode.window.showErrorMessage(`Crash Guard: cannot start crashguard: ${choice.why}.`, 'Set Up Crash Guard Training…')
    .then((c) => c && void vscode.commands.executeCommand('crashGuard.setUpTraining'));
  return undefined;
}

export class CrashGuardTaskProvider implements vscode.TaskProvider {
  constructor(private readonly deps: TaskDeps) {}

  async provideTasks(): Promise<vscode.Task[]> {
    const folders = this.deps.trainingFolders();
    if (folders.length === 0) return []; // nothing to offer in a folder that does not train with Crash Guard
    const choice = await this.deps.launch();
    if (!choice.ok) {
      this.deps.log.info(`no Crash Guard tasks to offer: ${choice.why}`);
      return [];
    }
    return folders.flatMap((folder) =>
      folderTaskDefinitions(this.deps.runsDirectory(folder)).map((def) => buildTask(def, choice.launch, folder)));
  }

  async resolveTask(task: vscode.Task): Promise<vscode.Task | undefined> {
    const def = task.definition as CrashGuardTaskDefinition;
    if (!(def.command in LABELS)) return undefined;
    const scope = task.scope ?? this.deps.folder() ?? vscode.TaskScope.Workspace;
    if (def.command === 'resume') {
      const run = this.deps.runs().find((r) => r.dir === def.runDir);
      const plan = run && resumePlan(run, (p) => vscode.workspace.getWorkspaceFolder(vscode.Uri.file(p))?.uri.fsPath);
      if (plan?.kind === 'recorded') return processTask(task.name, plan.argv, plan.cwd, scope, def);
      if (plan?.kind === 'relaunch') {
        const launch = await launchOrSay(this.deps, plan.interpreter);
        if (!launch) return undefined;
        const child = crashguardProcess(launch, plan.args);
        return processTask(task.name, [child.command, ...child.args], plan.cwd, scope, def, child.env);
      }
      const launch = plan?.kind === 'train' ? await launchOrSay(this.deps) : undefined;
      return plan?.kind === 'train' && launch ? buildTask(plan.definition, launch, scope, task.name, plan.cwd) : undefined;
    }
    const launch = await launchOrSay(this.deps);
    return launch && buildTask(def, launch, scope, task.name);
  }
}

/** Runs a Crash Guard task now (Start Safe Training, Resume, cleanup without a monitor). */
export async function runTask(deps: TaskDeps, def: CrashGuardTaskDefinition, name?: string,
  scope?: vscode.WorkspaceFolder | vscode.TaskScope, cwd?: string, python?: string): Promise<vscode.TaskExecution | undefined> {
  const launch = await launchOrSay(deps, python);
  if (!launch) return undefined;
  deps.log.info(`starting crashguard ${def.command} with ${launch.python} ${launch.how}`);
  return vscode.tasks.executeTask(buildTask(def, launch, scope ?? deps.folder() ?? vscode.TaskScope.Workspace, name, cwd));
}

export function runProcessTask(name: string, argv: readonly string[], cwd: string,
  scope: vscode.WorkspaceFolder | vscode.TaskScope, def: CrashGuardTaskDefinition, env?: Record<string, string>): Thenable<vscode.TaskExecution> {
  return vscode.tasks.executeTask(processTask(name, argv, cwd, scope, def, env));
}
