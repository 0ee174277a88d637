// Reads crashGuard.* from VS Code into the typed settings (settings.ts) and reports live changes; each folder's runs
// directory, kept inside the folder when the folder's own settings name it (C3).
import * as fs from 'node:fs';
import * as vscode from 'vscode';
import { messageText } from './escape';
import type { Log } from './logger';
import {
  chooseRunsDirectory, DEFAULTS, diffSettings, resolveSettings, SECTION, type ExtensionSettings, type RunsDirectoryChoice,
  type SettingsChange,
} from './settings';

export class Config implements vscode.Disposable {
  private current: ExtensionSettings = DEFAULTS;
  private readonly subscription: vscode.Disposable;
  /** The problems last shown: a value stays wrong across unrelated changes without being shown again. */
  private shown = new Set<string>();

  constructor(private readonly log: Log, onChange: (settings: ExtensionSettings, change: SettingsChange) => void) {
    this.current = this.read();
    this.subscription = vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration(SECTION)) return;
      const next = this.read();
      const change = diffSettings(this.current, next);
      this.current = next;
      onChange(next, change);
    });
  }

  get settings(): ExtensionSettings {
    return this.current;
  }

  private read(): ExtensionSettings {
    const cfg = vscode.workspace.getConfiguration(SECTION);
    const { settings, problems } = resolveSettings((key) => cfg.get(key), this.current);
    for (const p of problems) this.log.warn(`setting ignored: ${p}`);
    const fresh = problems.filter((p) => !this.shown.has(p));
    this.shown = new Set(problems);
    if (fresh.length > 0) {
      void vscode.window.showWarningMessage(`Crash Guard: ${fresh.join('; ')}.`, 'Open Settings')
        .then((c) => c && void vscode.commands.executeCommand('workbench.action.openSettings', SECTION));
    }
    return settings;
  }

  dispose(): void {
    this.subscription.dispose();
  }
}

/** Each folder's runs directory (C3): a workspace or folder value outside that folder is ignored, logged once and
 *  shown once (settings.ts chooseRunsDirectory decides). */
export class RunsDirectories {
  private readonly told = new Set<string>();

  constructor(private readonly log: Log) {}

  choice(folder: vscode.WorkspaceFolder): RunsDirectoryChoice {
    const values = vscode.workspace.getConfiguration(SECTION, folder.uri).inspect<string>('runsDirectory') ?? {};
    const choice = chooseRunsDirectory(folder.uri.fsPath, values, (p) => fs.realpathSync.native(p));
    if (choice.refused && !this.told.has(choice.refused)) {
      this.told.add(choice.refused);
      this.log.warn(`setting ignored: ${choice.refused}`);
      void vscode.window.showWarningMessage(messageText(`Crash Guard: ${choice.refused}.`), 'Open Settings')
        .then((c) => c && void vscode.commands.executeCommand('workbench.action.openSettings', `${SECTION}.runsDirectory`));
    }
    return choice;
  }

  /** The folder's absolute runs directory. */
  of(folder: vscode.WorkspaceFolder): string {
    return this.choice(folder).dir;
  }
}
