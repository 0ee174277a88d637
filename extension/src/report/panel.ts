// Show Memory Report: a webview with a live chart of RAM and each GPU, the thresholds, training events and the
// per-process tables. The data lives here (ReportData), not in the webview: the webview is thrown away while hidden
// (retainContextWhenHidden: false) and asks for the view again when it comes back; it also keeps the last view in
// its own state (setState) so it paints at once. History comes from the sidecar's ring buffer (crashGuard/history)
// on open and every few seconds while visible (events), live points from each crashGuard/sample.
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';
import type { SidecarState } from '../format';
import type { Log } from '../logger';
import type { Checker } from '../check';
import { HistoryResult, METHOD_HISTORY, type HistoryParams, type Sample } from '../protocol';
import { buildView, DEFAULT_WINDOW_SECONDS, ReportData, WINDOWS_SECONDS } from './model';

export const REPORT_VIEW_TYPE = 'crashGuard.report';
const TITLE = 'Crash Guard: Memory Report';
/** While visible, fetch the recent history this often (new events: level changes, run events, OOM back-offs). */
const EVENTS_REFRESH_MS = 5000;

export interface ReportDeps {
  log: Log;
  extensionUri: vscode.Uri;
  request<R>(method: string, params: unknown, result: Checker<R>): Promise<R>;
  sidecarState(): SidecarState;
  latest(): Sample | undefined;
}

type FromWebview = { type: 'ready' } | { type: 'window'; seconds: number };

export class Report implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private readonly data = new ReportData();
  private windowSeconds = DEFAULT_WINDOW_SECONDS;
  private lastFetch = 0;
  private fetching: Promise<void> | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(private readonly deps: ReportDeps) {
    this.disposables.push(vscode.window.registerWebviewPanelSerializer(REPORT_VIEW_TYPE, {
      deserializeWebviewPanel: async (panel: vscode.WebviewPanel, state: unknown) => {
        const seconds = (state as { windowSeconds?: unknown } | undefined)?.windowSeconds;
        if (typeof seconds === 'number' && (WINDOWS_SECONDS as readonly number[]).includes(seconds)) this.windowSeconds = seconds;
        this.adopt(panel);
        await this.fetchHistory();
        this.post();
      },
    }));
  }

  /** The command and the gauge click: open (or reveal) the report. */
  async show(): Promise<void> {
    if (this.panel) {
      this.panel.reveal();
      return;
    }
    const panel = vscode.window.createWebviewPanel(REPORT_VIEW_TYPE, TITLE, vscode.ViewColumn.Active, {
      enableScripts: true, retainContextWhenHidden: false,
      localResourceRoots: [vscode.Uri.joinPath(this.deps.extensionUri, 'media')],
    });
    this.adopt(panel);
    await this.fetchHistory();
    this.post();
  }

  /** Every sample: kept whether or not the report is open (cheap), pushed to the webview while it is visible. */
  onSample(sample: Sample): void {
    this.data.addSample(sample);
    if (!this.panel?.visible) return;
    this.post();
    if (Date.now() - this.lastFetch >= EVENTS_REFRESH_MS) void this.fetchHistory(30);
  }

  private adopt(panel: vscode.WebviewPanel): void {
    this.panel = panel;
    panel.webview.options = { enableScripts: true,
      localResourceRoots: [vscode.Uri.joinPath(this.deps.extensionUri, 'media')] };
    panel.webview.html = this.html(panel.webview);
    const subscriptions: vscode.Disposable[] = [];
    panel.webview.onDidReceiveMessage((m: FromWebview) => {
      if (m.type === 'window' && (WINDOWS_SECONDS as readonly number[]).includes(m.seconds)) this.windowSeconds = m.seconds;
      // 'ready': a fresh webview (opened, or shown again after being hidden) needs the whole view.
      this.post();
      if (m.type === 'ready') void this.fetchHistory().then(() => this.post());
    }, undefined, subscriptions);
    panel.onDidDispose(() => {
      if (this.panel === panel) this.panel = undefined;
      for (const d of subscriptions) d.dispose();
    });
  }

  /** Merge the sidecar's history (all it keeps, or the last `seconds`); a missing sidecar keeps what is here. */
  private fetchHistory(seconds?: number): Promise<void> {
    if (this.fetching) return this.fetching;
    this.lastFetch = Date.now();
    const params: HistoryParams = seconds === undefined ? {} : { seconds };
    this.fetching = this.deps.request(METHOD_HISTORY, params, HistoryResult)
      .then((h) => this.data.addHistory(h))
      .catch((e: unknown) => this.deps.log.warn(`memory report: no history from the sidecar (${String(e)})`))
      .finally(() => {
        this.fetching = undefined;
      });
    return this.fetching;
  }

  private post(): void {
    const panel = this.panel;
    if (!panel) return;
    if (!this.data.latest) {
      const latest = this.deps.latest();
      if (latest) this.data.addSample(latest);
    }
    const status = `memory monitor ${this.deps.sidecarState()}`;
    if (this.data.points.length === 0) {
      // Nothing to draw yet (e.g. restored after a reload before the sidecar is up): keep what the webview shows.
      void panel.webview.postMessage({ type: 'status', status: `${status}: no samples yet` });
      return;
    }
    void panel.webview.postMessage({ type: 'view', view: buildView(this.data, this.windowSeconds, status) });
  }

  private html(webview: vscode.Webview): string {
    const nonce = randomBytes(18).toString('base64');
    const media = (file: string): string => webview.asWebviewUri(vscode.Uri.joinPath(this.deps.extensionUri, 'media', file)).toString();
    const csp = [`default-src 'none'`, `script-src 'nonce-${nonce}'`, `style-src ${webview.cspSource}`,
      `img-src ${webview.cspSource} data:`, `font-src ${webview.cspSource}`].join('; ');
    const windows = WINDOWS_SECONDS.map((s) =>
      `<button type="button" data-window="${s}">${s < 120 ? `${s} s` : `${s / 60} min`}</button>`).join('');
    return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${media('report.css')}">
<title>${TITLE}</title>
</head>
<body>
<header><h1>Crash Guard memory report</h1><div class="windows" role="group" aria-label="Time window">${windows}</div></header>
<p id="status" class="muted">Loading the history from the memory monitor…</p>
<ul id="summary"></ul>
<div id="legend" class="legend"></div>
<svg id="chart" role="img" aria-label="RAM and GPU memory over time" data-points="0" data-thresholds="0"></svg>
<h2>Guarded runs</h2>
<table id="runs"><thead><tr><th>run</th><th>state</th><th>step</th><th>micro-batch</th><th>tree RSS</th><th>VRAM</th><th>last event</th></tr></thead><tbody></tbody></table>
<h2>Heaviest processes</h2>
<table id="processes"><thead><tr><th>pid</th><th>name</th><th>RSS</th><th>of the limit</th></tr></thead><tbody></tbody></table>
<h2>Who holds the VRAM</h2>
<table id="gpuProcesses"><thead><tr><th>GPU</th><th>pid</th><th>name</th><th>user</th><th>VRAM</th><th>command</th></tr></thead><tbody></tbody></table>
<h2>Events</h2>
<ul id="events" class="events"></ul>
<script nonce="${nonce}" src="${media('report.js')}"></script>
</body>
</html>`;
  }

  dispose(): void {
    this.panel?.dispose();
    for (const d of this.disposables) d.dispose();
  }
}
