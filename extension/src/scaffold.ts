// "Crash Guard: Add Safe Training to this Folder": a starter config (the low-memory preset shipped with the
// extension), the F5 configuration in .vscode/launch.json and a task in .vscode/tasks.json — written through VS
// Code's configuration API, which keeps the files' comments and other entries.
import * as vscode from 'vscode';
import { SAFE_TRAINING_CONFIG } from './cli';
import { SAFE_TRAINING_NAME, safeTrainingConfiguration } from './debugConfig';
import type { Log } from './logger';
import { TASK_TYPE } from './tasks';

export const TRAINING_TASK_LABEL = 'Crash Guard: Safe Training';

export interface Scaffolded {
  config: boolean;
  launch: boolean;
  task: boolean;
}

async function exists(uri: vscode.Uri): Promise<boolean> {
  try {
    await vscode.workspace.fs.stat(uri);
    return true;
  } catch {
    return false;
  }
}

export async function addSafeTraining(folder: vscode.WorkspaceFolder, template: vscode.Uri, log: Log): Promise<Scaffolded> {
  const done: Scaffolded = { config: false, launch: false, task: false };
  const config = vscode.Uri.joinPath(folder.uri, SAFE_TRAINING_CONFIG);
  if (!await exists(config)) {
    await vscode.workspace.fs.createDirectory(vscode.Uri.joinPath(config, '..'));
    // The template names its schema by a path next to it in this repository; in the user's folder the extension's
    // jsonValidation supplies the schema instead.
    const starter = JSON.parse(Buffer.from(await vscode.workspace.fs.readFile(template)).toString('utf8')) as Record<string, unknown>;
    delete starter.$schema;
    await vscode.workspace.fs.writeFile(config, Buffer.from(`${JSON.stringify(starter, null, 2)}\n`, 'utf8'));
    done.config = true;
  }
  const launch = vscode.workspace.getConfiguration('launch', folder.uri);
  const configurations = launch.inspect<vscode.DebugConfiguration[]>('configurations')?.workspaceFolderValue ?? [];
  if (!configurations.some((c) => c.name === SAFE_TRAINING_NAME)) {
    await launch.update('configurations', [...configurations, safeTrainingConfiguration()],
      vscode.ConfigurationTarget.WorkspaceFolder);
    done.launch = true;
  }
  const tasksSection = vscode.workspace.getConfiguration('tasks', folder.uri);
  const tasks = tasksSection.inspect<Record<string, unknown>[]>('tasks')?.workspaceFolderValue ?? [];
  if (!tasks.some((t) => t.label === TRAINING_TASK_LABEL)) {
    if (tasksSection.inspect('version')?.workspaceFolderValue === undefined) {
      await tasksSection.update('version', '2.0.0', vscode.ConfigurationTarget.WorkspaceFolder);
    }
    await tasksSection.update('tasks', [...tasks, {
      label: TRAINING_TASK_LABEL, type: TASK_TYPE, command: 'train', config: SAFE_TRAINING_CONFIG, problemMatcher: [],
    }], vscode.ConfigurationTarget.WorkspaceFolder);
    done.task = true;
  }
  log.info(`added safe training to ${folder.uri.fsPath}: ${JSON.stringify(done)}`);
  return done;
}
