// "Which run?": one quick pick for every action that must name a run (Stop Training, Don't Warn Again), listing
// runs in the order given (heaviest first where a toast asks) with their step and memory.
import * as vscode from 'vscode';
import { formatBytes } from './format';
import type { RunInfo } from './protocol';

export async function pickRun(runs: readonly RunInfo[], title: string): Promise<RunInfo | undefined> {
  const pick = await vscode.window.showQuickPick(runs.map((r) => ({
    label: r.name,
    description: `step ${r.step ?? '?'}, RSS ${formatBytes(r.treeRss)}${r.vram ? `, VRAM ${formatBytes(r.vram)}` : ''}`,
    detail: r.dir,
    run: r,
  })), { title });
  return pick?.run;
}
