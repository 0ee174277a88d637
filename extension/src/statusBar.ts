// The status bar gauges: RAM, and VRAM per GPU or one item for the fullest GPU (gauges.ts, crashGuard.gpuStatusBar).
// Never shows a stale number: without a fresh sample the RAM gauge says why and offers what to do. An item is sent
// to VS Code again only when its text or level changes (its tooltip at most every few seconds otherwise).
import * as vscode from 'vscode';
import { tooltipMarkdown, type PythonLines, type SidecarState, gpuTooltipMarkdown } from './format';
import { pressureLine, runDefenceParts } from './defences';
import {
  changedProps, gpuGauges, gpusTableMarkdown, noDataGauge, ramGauge, type Gauge, type GpuStatusBarMode, type ItemView,
} from './gauges';
import { gpuProcessLines } from './gpuProcesses';
import { backgroundColorId, foregroundColorId } from './levels';
import type { Log } from './logger';
import { isLinux, platformNote } from './platform';
import type { Sample } from './protocol';

export const CMD_SHOW_REPORT = 'crashGuard.showReport';
/** Restart Memory Monitor (the command id is older than the name). */
export const CMD_RESTART = 'crashGuard.restartSidecar';
export const CMD_START_MONITOR = 'crashGuard.startMonitor';
export const CMD_SELECT_MONITOR_PYTHON = 'crashGuard.selectMonitorPython';
export const CMD_MANAGE_TRUST = 'workbench.trust.manage';
const LINK_COMMANDS = [CMD_RESTART, CMD_START_MONITOR, CMD_SELECT_MONITOR_PYTHON, 'crashGuard.showLogs',
  'crashGuard.setUpTraining', CMD_MANAGE_TRUST];

/** A sample older than this many intervals (and at least STALE_MIN_MS) is not shown. */
const STALE_INTERVALS = 3;
const STALE_MIN_MS = 5000;

export interface StatusBarDeps {
  log: Log;
  activatedAt: number;
  intervalMs(): number;
  pythonLines(): PythonLines;
  topProcesses(): number;
  gpuMode(): GpuStatusBarMode;
  /** A line when this window runs a memory monitor of its own (monitorTransport.ts), else null. */
  transportNote(): string | null;
}

/** One StatusBarItem and what it last showed: properties are set only when they change. */
class Item implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private view: ItemView | undefined;
  private tooltipAt = 0;

  constructor(gauge: Gauge, priority: number) {
    this.item = vscode.window.createStatusBarItem(gauge.id, vscode.StatusBarAlignment.Left, priority);
    this.item.name = gauge.name;
  }

  render(gauge: Gauge, tooltip: string, command: string | undefined, force = false): void {
    const next: ItemView = { text: gauge.text, level: gauge.level, label: gauge.label, tooltip, command };
    const now = Date.now();
    const changed = changedProps(this.view, next, now - this.tooltipAt, force);
    if (changed.length === 0) return;
    const it = this.item;
    for (const key of changed) {
      if (key === 'text') it.text = next.text;
      else if (key === 'label') it.accessibilityInformation = { label: next.label };
      else if (key === 'command') it.command = next.command;
      else if (key === 'level') {
        // Colour and (in the text) an icon: a level is never shown by colour alone.
        const bg = backgroundColorId(next.level);
        const fg = foregroundColorId(next.level);
        it.backgroundColor = bg ? new vscode.ThemeColor(bg) : undefined;
        it.color = fg ? new vscode.ThemeColor(fg) : undefined;
      } else {
        const md = new vscode.MarkdownString(next.tooltip);
        md.supportThemeIcons = true;
        md.isTrusted = { enabledCommands: LINK_COMMANDS };
        it.tooltip = md;
        this.tooltipAt = now;
      }
    }
    this.view = next;
    it.show();
  }

  dispose(): void {
    this.item.dispose();
  }
}

export class StatusBar implements vscode.Disposable {
  private readonly ram: Item;
  private readonly gpus = new Map<string, Item>();
  private latest: Sample | undefined;
  private receivedAt = 0;
  private state: SidecarState = 'starting';
  private detail: string | undefined;
  private readonly timer: NodeJS.Timeout;
  private firstGaugeLogged = false;

  constructor(private readonly deps: StatusBarDeps) {
    this.ram = new Item(noDataGauge('starting'), 100);
    this.renderNoData();
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
      this.latest = undefined; // a sample from a dead monitor is stale by definition
      this.renderNoData();
    }
  }

  update(sample: Sample): void {
    this.latest = sample;
    this.receivedAt = Date.now();
    this.render(sample);
    if (!this.firstGaugeLogged) {
      this.firstGaugeLogged = true;
      this.deps.log.info(`first gauge ${Date.now() - this.deps.activatedAt} ms after activation`);
    }
  }

  private isFresh(): boolean {
    const limit = Math.max(STALE_INTERVALS * this.deps.intervalMs(), STALE_MIN_MS);
    return this.latest !== undefined && Date.now() - this.receivedAt <= limit;
  }

  private checkStale(): void {
    if (this.latest && !this.isFresh()) {
      this.deps.log.warn('no sample from the memory monitor for a while; hiding the numbers');
      this.latest = undefined;
      this.renderNoData('stale');
    }
  }

  private render(sample: Sample, force = false): void {
    const linux = isLinux(process.platform);
    const tooltip = tooltipMarkdown(sample, this.deps.topProcesses(), this.deps.pythonLines(), {
      pressure: linux ? pressureLine(sample) : null, runParts: runDefenceParts, platform: platformNote(process.platform),
      transport: this.deps.transportNote(),
    });
    this.ram.render(ramGauge(sample), tooltip, CMD_SHOW_REPORT, force);

    const gauges = gpuGauges(sample.gpus, this.deps.gpuMode());
    const wanted = new Set(gauges.map((g) => g.id));
    for (const [id, item] of this.gpus) {
      if (wanted.has(id)) continue;
      item.dispose();
      this.gpus.delete(id);
    }
    gauges.forEach((gauge, i) => {
      let item = this.gpus.get(gauge.id);
      if (!item) {
        item = new Item(gauge, 99 - i);
        this.gpus.set(gauge.id, item);
      }
      const [only] = gauge.gpus;
      const tip = gauge.gpus.length === 1 && only ? [gpuTooltipMarkdown(only, sample), ...gpuProcessLines(only)].join('\n')
        : gpusTableMarkdown(gauge.gpus, sample);
      item.render(gauge, tip, CMD_SHOW_REPORT, force);
    });
  }

  /** Re-renders the tooltip's Python lines (the training environment was checked again) or a changed mode. */
  refresh(): void {
    if (this.latest) this.render(this.latest, true);
  }

  private renderNoData(state?: Exclude<SidecarState, 'running'>): void {
    const shown = state ?? (this.state === 'running' ? 'starting' : this.state);
    // Never coloured without a sample: red means memory is critical, and a stopped monitor says nothing about it.
    const gauge = noDataGauge(shown);
    const logs = '[Show Logs](command:crashGuard.showLogs)';
    const why = this.detail ? ` (${this.detail})` : '';
    let tooltip: string;
    let command: string | undefined;
    switch (shown) {
      case 'restricted':
        tooltip = '**Crash Guard** does not run in Restricted Mode: its memory monitor starts a Python process, and a ' +
          `folder you have not trusted must not choose how.\n\n[Manage Workspace Trust](command:${CMD_MANAGE_TRUST}) to start the gauges.`;
        command = CMD_MANAGE_TRUST;
        break;
      case 'starting':
        tooltip = 'Crash Guard: starting the memory monitor…';
        command = undefined;
        break;
      case 'stopped':
        tooltip = `Crash Guard: the memory monitor is off (Stop Memory Monitor is remembered for this workspace).\n\n` +
          `[Start Memory Monitor](command:${CMD_START_MONITOR})`;
        command = CMD_START_MONITOR;
        break;
      case 'noPython': {
        const tried = (this.detail ?? '').split('\n').filter(Boolean).map((l) => `- ${l.replace(/[[\]`*_<>\\]/g, (c) => `\\${c}`)}`);
        tooltip = ['**Crash Guard**: the memory monitor needs Python 3.10 or newer, and none was found (it needs nothing ' +
          'else installed: it ships with the extension).', '', ...tried.length > 0 ? ['Passed over:', '', ...tried, ''] : [],
        `[Select Python for the Memory Monitor…](command:${CMD_SELECT_MONITOR_PYTHON}) · ${logs}`].join('\n');
        command = CMD_SELECT_MONITOR_PYTHON;
        break;
      }
      case 'stale':
        tooltip = `**Crash Guard**: no fresh sample from the memory monitor.\n\n[Restart Memory Monitor](command:${CMD_RESTART}) · ${logs}`;
        command = CMD_RESTART;
        break;
      default:
        tooltip = `**Crash Guard**: the memory monitor is ${shown === 'incompatible' ? 'incompatible' : 'down'}${why}.\n\n` +
          `[Start Memory Monitor](command:${CMD_START_MONITOR}) · ${logs}`;
        command = CMD_START_MONITOR;
    }
    this.ram.render(gauge, tooltip, command, true);
    for (const item of this.gpus.values()) item.dispose();
    this.gpus.clear();
  }

  dispose(): void {
    clearInterval(this.timer);
    this.ram.dispose();
    for (const item of this.gpus.values()) item.dispose();
  }
}
