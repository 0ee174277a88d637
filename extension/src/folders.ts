// Which workspace folders train with Crash Guard: those with a Crash Guard training config
// (config/safe_training*.json, *.crashguard.json) or a run registered in their runs directory, and those the user
// set up with "Add Safe Training to this Folder" (which writes such a config). Only there do the F5
// configuration, the tasks and the training commands appear; the gauges work everywhere.
import * as vscode from 'vscode';
import { TRAINING_CONFIG_GLOB as CONFIG_GLOB } from './cli';
import type { Log } from './logger';

export const CONTEXT_KEY = 'crashGuard.trainingFolder';
const RUN_GLOB = '*/status.json';

export class TrainingFolders implements vscode.Disposable {
  private found = new Set<string>();
  private readonly emitter = new vscode.EventEmitter<void>();
  readonly onDidChange = this.emitter.event;
  private watchers: vscode.Disposable[] = [];
  private pending: NodeJS.Timeout | undefined;
  private readonly subscriptions: vscode.Disposable[];

  constructor(private readonly log: Log, private readonly runsDirectory: (folder: vscode.WorkspaceFolder) => string) {
    this.subscriptions = [vscode.workspace.onDidChangeWorkspaceFolders(() => this.refresh())];
    this.refresh();
  }

  get folders(): vscode.WorkspaceFolder[] {
    return (vscode.workspace.workspaceFolders ?? []).filter((f) => this.found.has(f.uri.toString()));
  }

  has(folder: vscode.WorkspaceFolder): boolean {
    return this.found.has(folder.uri.toString());
  }

  /** Looks again (folders or the runs directory setting changed, or a config was written). */
  refresh(): void {
    for (const w of this.watchers) w.dispose();
    this.watchers = [];
    for (const folder of vscode.workspace.workspaceFolders ?? []) {
      for (const pattern of [new vscode.RelativePattern(folder, CONFIG_GLOB),
        new vscode.RelativePattern(vscode.Uri.file(this.runsDirectory(folder)), RUN_GLOB)]) {
        const watcher = vscode.workspace.createFileSystemWatcher(pattern, false, true, true);
        watcher.onDidCreate(() => this.schedule());
        this.watchers.push(watcher);
      }
    }
    this.schedule(0);
  }

  private schedule(delayMs = 500): void {
    if (this.pending) clearTimeout(this.pending);
    this.pending = setTimeout(() => void this.detect(), delayMs);
  }

  private async detect(): Promise<void> {
    this.pending = undefined;
    const found = new Set<string>();
    for (const folder of vscode.workspace.workspaceFolders ?? []) {
      const runs = vscode.Uri.file(this.runsDirectory(folder));
      const hits = await Promise.all([
        vscode.workspace.findFiles(new vscode.RelativePattern(folder, CONFIG_GLOB), null, 1),
        vscode.workspace.findFiles(new vscode.RelativePattern(runs, RUN_GLOB), null, 1),
      ]).catch(() => [[], []]);
      if (hits.some((h) => h.length > 0)) found.add(folder.uri.toString());
    }
    const changed = found.size !== this.found.size || [...found].some((f) => !this.found.has(f));
    this.found = found;
    await vscode.commands.executeCommand('setContext', CONTEXT_KEY, found.size > 0);
    if (changed) {
      this.log.info(`folders that train with Crash Guard: ${this.folders.map((f) => f.name).join(', ') || 'none'}`);
      this.emitter.fire();
    }
  }

  dispose(): void {
    if (this.pending) clearTimeout(this.pending);
    for (const d of [...this.watchers, ...this.subscriptions, this.emitter]) d.dispose();
  }
}
