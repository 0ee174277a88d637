// Task provider for the `crashGuard` task type: the monitor, the emergency cleanup and safe training, offered only
// in folders that train with Crash Guard (folders.ts), never as a default build task; the same definitions resume
// a crashed run in its own folder.
import * as vscode from 'vscode';
import { displayCommand, SAFE_TRAINING_CONFIG, taskArgs, type CrashGuardTaskDefinition } from './cli';
import { resumePlan } from './crashes';
import type { Interpreter } from './python';
import type { RunInfo } from './protocol';

export const TASK_TYPE = 'crashGuard';

const LABELS: Record<CrashGuardTaskDefinition['command'], string> = {
  monitor: 'Start Memory Monitor',
  cleanup: 'Emergency Cleanup',
  train: 'Safe Training (Low Memory)',
  resume: 'Resume Run',
};

export interface TaskDeps {
  /** The training environment's interpreter (crashguard[train]). */
  interpreter(): Promise<Interpreter>;
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

export function buildTask(def: CrashGuardTaskDefinition, python: string,
  scope: vscode.WorkspaceFolder | vscode.TaskScope, name?: string, cwd?: string): vscode.Task {
  const dir = cwd ?? (typeof scope === 'object' ? scope.uri.fsPath : undefined);
  const execution = new vscode.ProcessExecution(python, taskArgs(def), dir ? { cwd: dir } : {});
  const task = new vscode.Task(def, scope, name ?? LABELS[def.command], 'Crash Guard', execution);
  return presented(task, `python ${taskArgs(def).join(' ')}`);
}

/** A task that runs `argv` as it is (argv[0] is the program), in `cwd`, without a shell. */
export function processTask(name: string, argv: readonly string[], cwd: string,
  scope: vscode.WorkspaceFolder | vscode.TaskScope, def: CrashGuardTaskDefinition): vscode.Task {
  const [program = '', ...args] = argv;
  const task = new vscode.Task(def, scope, name, 'Crash Guard', new vscode.ProcessExecution(program, args, { cwd }));
  return presented(task, displayCommand(program, args));
}

export class CrashGuardTaskProvider implements vscode.TaskProvider {
  constructor(private readonly deps: TaskDeps) {}

  async provideTasks(): Promise<vscode.Task[]> {
    const folders = this.deps.trainingFolders();
    if (folders.length === 0) return []; // nothing to offer in a folder that does not train with Crash Guard
    const python = (await this.deps.interpreter()).path;
    return folders.flatMap((folder) => {
      const runsDir = this.deps.runsDirectory(folder);
      const defs: CrashGuardTaskDefinition[] = [
        { type: TASK_TYPE, command: 'monitor' },
        { type: TASK_TYPE, command: 'cleanup', runsDir },
        { type: TASK_TYPE, command: 'train', config: SAFE_TRAINING_CONFIG, runsDir },
      ];
      return defs.map((def) => buildTask(def, python, folder));
    });
  }

  async resolveTask(task: vscode.Task): Promise<vscode.Task | undefined> {
    const def = task.definition as CrashGuardTaskDefinition;
    if (!(def.command in LABELS)) return undefined;
    const scope = task.scope ?? this.deps.folder() ?? vscode.TaskScope.Workspace;
    if (def.command === 'resume') {
      const run = this.deps.runs().find((r) => r.dir === def.runDir);
      const plan = run && resumePlan(run, (p) => vscode.workspace.getWorkspaceFolder(vscode.Uri.file(p))?.uri.fsPath);
      if (plan?.kind === 'recorded') return processTask(task.name, plan.argv, plan.cwd, scope, def);
      if (plan?.kind === 'train') return buildTask(plan.definition, (await this.deps.interpreter()).path, scope, task.name, plan.cwd);
      return undefined;
    }
    return buildTask(def, (await this.deps.interpreter()).path, scope, task.name);
  }
}

/** Runs a Crash Guard task now (Start Safe Training, Resume, cleanup without a sidecar). */
export async function runTask(deps: TaskDeps, def: CrashGuardTaskDefinition, name?: string,
  scope?: vscode.WorkspaceFolder | vscode.TaskScope, cwd?: string): Promise<vscode.TaskExecution> {
  const python = (await deps.interpreter()).path;
  return vscode.tasks.executeTask(buildTask(def, python, scope ?? deps.folder() ?? vscode.TaskScope.Workspace, name, cwd));
}

export function runProcessTask(name: string, argv: readonly string[], cwd: string,
  scope: vscode.WorkspaceFolder | vscode.TaskScope, def: CrashGuardTaskDefinition): Thenable<vscode.TaskExecution> {
  return vscode.tasks.executeTask(processTask(name, argv, cwd, scope, def));
}
