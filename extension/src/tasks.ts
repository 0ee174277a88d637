// Task provider for the `crashGuard` task type: the monitor, the emergency cleanup and (safe) training appear
// under Tasks: Run Task; the same definitions resume a crashed run.
import * as vscode from 'vscode';
import { SAFE_TRAINING_CONFIG, taskArgs, type CrashGuardTaskDefinition } from './cli';
import type { Interpreter } from './python';

export const TASK_TYPE = 'crashGuard';

const LABELS: Record<CrashGuardTaskDefinition['command'], string> = {
  monitor: 'Start Memory Monitor',
  cleanup: 'Emergency Cleanup',
  train: 'Safe Training (Low Memory)',
};

export interface TaskDeps {
  interpreter(): Promise<Interpreter>;
  folder(): vscode.WorkspaceFolder | undefined;
}

export function buildTask(def: CrashGuardTaskDefinition, python: string,
  scope: vscode.WorkspaceFolder | vscode.TaskScope, name?: string): vscode.Task {
  const cwd = typeof scope === 'object' ? scope.uri.fsPath : undefined;
  const execution = new vscode.ProcessExecution(python, taskArgs(def), cwd ? { cwd } : {});
  const task = new vscode.Task(def, scope, name ?? LABELS[def.command], 'Crash Guard', execution);
  task.detail = `python ${taskArgs(def).join(' ')}`;
  task.presentationOptions = { reveal: vscode.TaskRevealKind.Always, panel: vscode.TaskPanelKind.Dedicated };
  if (def.command === 'train') task.group = vscode.TaskGroup.Build;
  task.isBackground = false;
  return task;
}

export class CrashGuardTaskProvider implements vscode.TaskProvider {
  constructor(private readonly deps: TaskDeps) {}

  async provideTasks(): Promise<vscode.Task[]> {
    const python = (await this.deps.interpreter()).path;
    const scope = this.deps.folder() ?? vscode.TaskScope.Workspace;
    const defs: CrashGuardTaskDefinition[] = [
      { type: TASK_TYPE, command: 'monitor' },
      { type: TASK_TYPE, command: 'cleanup' },
      { type: TASK_TYPE, command: 'train', config: SAFE_TRAINING_CONFIG },
    ];
    return defs.map((def) => buildTask(def, python, scope));
  }

  async resolveTask(task: vscode.Task): Promise<vscode.Task | undefined> {
    const def = task.definition as CrashGuardTaskDefinition;
    if (!(def.command in LABELS)) return undefined;
    const python = (await this.deps.interpreter()).path;
    const scope = task.scope ?? this.deps.folder() ?? vscode.TaskScope.Workspace;
    return buildTask(def, python, scope, task.name);
  }
}

/** Runs a Crash Guard task now (Start Safe Training, Resume, cleanup without a sidecar). */
export async function runTask(deps: TaskDeps, def: CrashGuardTaskDefinition, name?: string): Promise<vscode.TaskExecution> {
  const python = (await deps.interpreter()).path;
  const scope = deps.folder() ?? vscode.TaskScope.Workspace;
  return vscode.tasks.executeTask(buildTask(def, python, scope, name));
}
