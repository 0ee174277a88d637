// Show Memory Report: a read-only markdown document (virtual, so closing it never asks to save) rendered with
// the built-in markdown preview; it refreshes with each sample while open.
import * as vscode from 'vscode';
import { reportMarkdown, type SidecarState } from './format';
import type { Log } from './logger';
import type { Sample } from './protocol';

export const REPORT_SCHEME = 'crashguard-report';
export const REPORT_URI = vscode.Uri.parse(`${REPORT_SCHEME}:/Crash%20Guard%20memory%20report.md`);

export class Report implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private lastRefresh = 0;

  constructor(private readonly log: Log, private readonly sample: () => Sample | undefined,
    private readonly state: () => SidecarState) {}

  provideTextDocumentContent(): string {
    return reportMarkdown(this.sample(), this.state());
  }

  /** Called on every sample; refreshes an open report at most every 2 s. */
  refresh(): void {
    const open = vscode.workspace.textDocuments.some((d) => d.uri.toString() === REPORT_URI.toString());
    if (!open || Date.now() - this.lastRefresh < 2000) return;
    this.lastRefresh = Date.now();
    this.changed.fire(REPORT_URI);
  }

  async show(): Promise<void> {
    this.changed.fire(REPORT_URI);
    try {
      await vscode.commands.executeCommand('markdown.showPreview', REPORT_URI);
    } catch (error) {
      this.log.warn(`markdown preview unavailable (${String(error)}); showing the text`);
      const doc = await vscode.workspace.openTextDocument(REPORT_URI);
      await vscode.window.showTextDocument(doc, { preview: true });
    }
  }

  dispose(): void {
    this.changed.dispose();
  }
}
