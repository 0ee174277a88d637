// Reads crashGuard.* from VS Code into the typed settings (settings.ts) and reports live changes.
import * as vscode from 'vscode';
import type { Log } from './logger';
import { diffSettings, resolveSettings, SECTION, type ExtensionSettings, type SettingsChange } from './settings';

export class Config implements vscode.Disposable {
  private current: ExtensionSettings;
  private readonly subscription: vscode.Disposable;

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
    const { settings, problems } = resolveSettings((key) => cfg.get(key));
    for (const p of problems) this.log.warn(`setting ignored: ${p}`);
    return settings;
  }

  dispose(): void {
    this.subscription.dispose();
  }
}
