// Reads crashGuard.* from VS Code into the typed settings (settings.ts) and reports live changes.
import * as vscode from 'vscode';
import type { Log } from './logger';
import { DEFAULTS, diffSettings, resolveSettings, SECTION, type ExtensionSettings, type SettingsChange } from './settings';

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
