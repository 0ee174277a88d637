// The log channel ({ log: true }): one place for the extension's and the sidecar's messages.
import * as vscode from 'vscode';

export type Log = Pick<vscode.LogOutputChannel, 'trace' | 'debug' | 'info' | 'warn' | 'error'>;

export function createLogChannel(): vscode.LogOutputChannel {
  return vscode.window.createOutputChannel('Crash Guard', { log: true });
}
