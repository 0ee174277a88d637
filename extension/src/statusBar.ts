// The status bar gauges: RAM, and one VRAM gauge per GPU (none without a GPU). Never shows a stale number:
// without a fresh sample the RAM gauge says why and offers a restart.
import * as vscode from 'vscode';
import { formatBytes, gpuGaugeText, gpuTooltipMarkdown, noDataGaugeText, ramGaugeText, tooltipMarkdown,
  type PythonLines, type SidecarState } from './format';
import { pressureLine, runDefenceParts } from './defences';
import { gpuProcessLines } from './gpuProcesses';
import { backgroundColorId, foregroundColorId } from './levels';
import type { Log } from './logger';
import type { Level, Sample } from './protocol';

export const CMD_SHOW_REPORT = 'crashGuard.showReport';
export const CMD_RESTART = 'crashGuard.restartSidecar';
export const CMD_START_MONITOR = 'crashGuard.startMonitor';
export const CMD_MANAGE_TRUST = 'workbench.trust.manage';
const LINK_COMMANDS = [CMD_RESTART, 'crashGuard.showLogs', 'crashGuard.setUpTraining', CMD_MANAGE_TRUST];

/** A sample older than this many intervals (and at least STALE_MIN_MS) is not shown. */
const STALE_INTERVALS = 3;
const STALE_MIN_MS = 5000;

export class StatusBar implements vscode.Disposable {
  private readonly ram: vscode.StatusBarItem;
  private readonly gpus: vscode.StatusBarItem[] = [];
  private latest: Sample | undefined;
  private receivedAt = 0;
  private state: SidecarState = 'starting';
  private detail: string | undefined;
  private readonly timer: NodeJS.Timeout;
  private firstGaugeLogged = false;

  constructor(private readonly log: Log, private readonly activatedAt: number,
    private readonly intervalMs: () => number, private readonly pythonLines: () => PythonLines,
    private readonly topProcesses: () => number) {
    this.ram = vscode.window.createStatusBarItem('crashGuard.ram', vscode.StatusBarAlignment.Left, 100);
    this.ram.name = 'Crash Guard RAM';
    this.renderNoData();
    this.ram.show();
    this.timer = setInterval(() => this.checkStale(), 1000);
  }

  get lastSample(): Sample | undefined {
    return this.isFresh() ? this.latest : undefined;
  }

  get sidecarState(): SidecarState {
    return this.state === 'running' && !this.isFresh() && this.latest ? 'stale' : this.state;
  }

  setState(state: SidecarState, detail?: string): void {
    this.state = state;
    this.detail = detail;
    if (state !== 'running') {
      this.latest = undefined; // a sample from a dead sidecar is stale by definition
      this.renderNoData();
    }
  }

  update(sample: Sample): void {
    this.latest = sample;
    this.receivedAt = Date.now();
    this.render(sample);
    if (!this.firstGaugeLogged) {
      this.firstGaugeLogged = true;
      this.log.info(`first gauge ${Date.now() - this.activatedAt} ms after activation`);
    }
  }

  private isFresh(): boolean {
    const limit = Math.max(STALE_INTERVALS * this.intervalMs(), STALE_MIN_MS);
    return this.latest !== undefined && Date.now() - this.receivedAt <= limit;
  }

  private checkStale(): void {
    if (this.latest && !this.isFresh()) {
      this.log.warn('no sample from the sidecar for a while; hiding the numbers');
      this.latest = undefined;
      this.renderNoData('stale');
    }
  }

  private paint(item: vscode.StatusBarItem, level: Level): void {
    const bg = backgroundColorId(level);
    const fg = foregroundColorId(level);
    item.backgroundColor = bg ? new vscode.ThemeColor(bg) : undefined;
    item.color = fg ? new vscode.ThemeColor(fg) : undefined;
  }

  private render(sample: Sample): void {
    this.ram.text = ramGaugeText(sample.ram.percent);
    const tip = new vscode.MarkdownString(tooltipMarkdown(sample, this.topProcesses(), this.pythonLines(),
      { pressure: pressureLine(sample), runParts: runDefenceParts }));
    tip.supportThemeIcons = true;
    tip.isTrusted = { enabledCommands: LINK_COMMANDS };
    this.ram.tooltip = tip;
    this.ram.command = { command: CMD_SHOW_REPORT, title: 'Show Memory Report' };
    this.ram.accessibilityInformation = {
      label: `RAM ${Math.round(sample.ram.percent)} percent used, ${formatBytes(sample.ram.available)} available, ${sample.ram.level}`,
    };
    // A sustained memory stall is a warning even while the percent is below its threshold.
    this.paint(this.ram, sample.ram.level === 'normal' && sample.pressure?.level === 'warning' ? 'warning' : sample.ram.level);
    this.ram.show();

    while (this.gpus.length > sample.gpus.length) this.gpus.pop()?.dispose();
    sample.gpus.forEach((gpu, i) => {
      let item = this.gpus[i];
      if (!item) {
        item = vscode.window.createStatusBarItem(`crashGuard.vram${i}`, vscode.StatusBarAlignment.Left, 99 - i);
        item.name = `Crash Guard VRAM ${i}`;
        this.gpus.push(item);
      }
      item.text = gpuGaugeText(gpu, sample.gpus.length);
      const gtip = new vscode.MarkdownString([gpuTooltipMarkdown(gpu, sample), ...gpuProcessLines(gpu)].join('\n'));
      item.tooltip = gtip;
      item.command = { command: CMD_SHOW_REPORT, title: 'Show Memory Report' };
      this.paint(item, gpu.level);
      item.show();
    });
  }

  /** Re-renders the tooltip's Python lines (the training environment was checked again). */
  refresh(): void {
    if (this.latest) this.render(this.latest);
  }

  private renderNoData(state?: Exclude<SidecarState, 'running'>): void {
    const shown = state ?? (this.state === 'running' ? 'starting' : this.state);
    this.ram.text = noDataGaugeText(shown);
    // Never red without a sample: red means memory is critical, and a stopped sidecar says nothing about memory.
    this.paint(this.ram, 'normal');
    if (shown === 'restricted') {
      const md = new vscode.MarkdownString('**Crash Guard** does not run in Restricted Mode: its memory monitor starts ' +
        'a Python process, and a folder you have not trusted must not choose how.\n\n' +
        `[Manage Workspace Trust](command:${CMD_MANAGE_TRUST}) to start the gauges.`);
      md.isTrusted = { enabledCommands: LINK_COMMANDS };
      this.ram.tooltip = md;
      this.ram.command = { command: CMD_MANAGE_TRUST, title: 'Manage Workspace Trust' };
    } else if (shown === 'starting') {
      this.ram.tooltip = 'Crash Guard: starting the memory sidecar…';
      this.ram.command = undefined;
    } else if (shown === 'stopped') {
      this.ram.tooltip = 'Crash Guard: the memory monitor is off. Click to start it.';
      this.ram.command = { command: CMD_START_MONITOR, title: 'Start Memory Monitor' };
    } else {
      const why = this.detail ? ` (${this.detail})` : '';
      const md = new vscode.MarkdownString(
        shown === 'stale' ? `**Crash Guard**: no fresh sample from the sidecar.\n\n[Restart Sidecar](command:${CMD_RESTART})`
          : `**Crash Guard**: the memory sidecar is ${shown === 'incompatible' ? 'incompatible' : 'down'}${why}.\n\n` +
            `[Restart Sidecar](command:${CMD_RESTART}) · [Show Logs](command:crashGuard.showLogs)`);
      md.isTrusted = { enabledCommands: LINK_COMMANDS };
      this.ram.tooltip = md;
      this.ram.command = { command: CMD_RESTART, title: 'Restart Sidecar' };
    }
    for (const item of this.gpus) item.dispose();
    this.gpus.length = 0;
  }

  dispose(): void {
    clearInterval(this.timer);
    this.ram.dispose();
    for (const item of this.gpus) item.dispose();
  }
}
