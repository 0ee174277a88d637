// The status-bar gauges as data: which items exist (RAM, and VRAM per GPU or one for the worst GPU), their text,
// level and accessibility label, and when an item needs to be sent to VS Code again. Pure: no 'vscode' import.
import { formatBytes, formatPercent, gpuGaugeText, noDataGaugeText, ramGaugeText, type SidecarState } from './format';
import { rank } from './levels';
import type { GpuInfo, Level, Sample } from './protocol';

export const GPU_STATUS_BAR_MODES = ['auto', 'each', 'worst', 'off'] as const;
/** crashGuard.gpuStatusBar: `auto` = one item per GPU up to AUTO_EACH_UP_TO GPUs, one for the worst above. */
export type GpuStatusBarMode = typeof GPU_STATUS_BAR_MODES[number];
export const AUTO_EACH_UP_TO = 2;
/** While an item's text and level stay the same, its tooltip (numbers that move every sample) is sent at most this
 *  often: an 8-GPU box at a 1 s interval would otherwise re-send nine Markdown tooltips every second. */
export const TOOLTIP_REFRESH_MS = 5000;

const LEVEL_WORD: Record<Level, string> = { normal: '', warning: ', warning', critical: ', critical' };

/** One status-bar item's content. */
export interface Gauge {
  /** The StatusBarItem id (stable: VS Code remembers a hidden item by it). */
  id: string;
  name: string;
  text: string;
  level: Level;
  /** The screen reader's label (accessibilityInformation), derived from text and level only. */
  label: string;
  /** The GPUs the item is about (its tooltip lists them). */
  gpus: GpuInfo[];
}

/** The RAM gauge's level: a sustained memory stall is a warning even below the percent threshold. */
export function ramLevel(sample: Sample): Level {
  return sample.ram.level === 'normal' && sample.pressure?.level === 'warning' ? 'warning' : sample.ram.level;
}

export function ramGauge(sample: Sample): Gauge {
  const level = ramLevel(sample);
  return {
    id: 'crashGuard.ram', name: 'Crash Guard RAM', text: ramGaugeText(sample.ram.percent, level), level,
    label: `Crash Guard: RAM ${formatPercent(sample.ram.percent)} used${LEVEL_WORD[level]}`, gpus: [],
  };
}

const NO_DATA_LABEL: Record<Exclude<SidecarState, 'running'>, string> = {
  starting: 'Crash Guard: starting the memory monitor',
  stale: 'Crash Guard RAM: no data',
  down: 'Crash Guard RAM: monitor down',
  stopped: 'Crash Guard RAM: monitor off',
  restricted: 'Crash Guard: Restricted Mode',
  incompatible: 'Crash Guard RAM: monitor incompatible',
  noPython: 'Crash Guard RAM: needs Python 3.10+',
};

/** The RAM item without a sample: the monitor's state, never a number. */
export function noDataGauge(state: Exclude<SidecarState, 'running'>): Gauge {
  return { id: 'crashGuard.ram', name: 'Crash Guard RAM', text: noDataGaugeText(state), level: 'normal',
    label: NO_DATA_LABEL[state], gpus: [] };
}

/** The GPU to show when one item stands for all: the highest level, then the fullest (unknown counts as empty). */
export function worstGpu(gpus: readonly GpuInfo[]): GpuInfo | undefined {
  let out: GpuInfo | undefined;
  for (const g of gpus) {
    if (!out || rank(g.level) > rank(out.level) ||
        (rank(g.level) === rank(out.level) && (g.percent ?? -1) > (out.percent ?? -1))) out = g;
  }
  return out;
}

function gpuLabel(gpu: GpuInfo): string {
  return `GPU ${gpu.index}: VRAM ${formatPercent(gpu.percent)} used${LEVEL_WORD[gpu.level]}`;
}

/** The VRAM items for `mode`: one per GPU, one for the worst, or none. */
export function gpuGauges(gpus: readonly GpuInfo[], mode: GpuStatusBarMode): Gauge[] {
  if (mode === 'off' || gpus.length === 0) return [];
  if (mode === 'each' || (mode === 'auto' && gpus.length <= AUTO_EACH_UP_TO)) {
    return gpus.map((gpu) => ({
      id: `crashGuard.vram${gpu.index}`, name: `Crash Guard VRAM ${gpu.index}`, text: gpuGaugeText(gpu, gpus.length),
      level: gpu.level, label: `Crash Guard: ${gpuLabel(gpu)}`, gpus: [gpu],
    }));
  }
  const worst = worstGpu(gpus) as GpuInfo;
  const of = gpus.length > 1 ? ` (max of ${gpus.length})` : '';
  return [{
    id: 'crashGuard.vram', name: 'Crash Guard VRAM', text: `${gpuGaugeText(worst, gpus.length)}${of}`,
    level: worst.level, label: `Crash Guard: the fullest of ${gpus.length} GPUs, ${gpuLabel(worst)}`, gpus: [...gpus],
  }];
}

const LEVEL_CELL: Record<Level, string> = { normal: 'normal', warning: '**warning**', critical: '**CRITICAL**' };
const cell = (text: string): string => text.replace(/[|\\`*_[\]<>]/g, (c) => `\\${c}`);

/** The tooltip of an item that stands for several GPUs: every GPU, one row each. */
export function gpusTableMarkdown(gpus: readonly GpuInfo[], sample: Sample): string {
  const t = sample.thresholds;
  const worst = worstGpu(gpus);
  const lines = [`**${gpus.length} GPUs** — the fullest: GPU ${worst?.index ?? '?'} (${LEVEL_CELL[worst?.level ?? 'normal']})`, '',
    '| GPU | VRAM | used | level |', '| --- | --- | --- | --- |'];
  for (const g of gpus) {
    lines.push(`| ${g.index} ${cell(g.name)} | ${formatPercent(g.percent, 1)} | ${formatBytes(g.used)} of ` +
      `${formatBytes(g.total)} | ${LEVEL_CELL[g.level]} |`);
  }
  lines.push('', `Warning at ${t.vramWarningPercent}%, critical at ${t.vramCriticalPercent}% (each GPU).`);
  return lines.join('\n');
}

/** What an item shows; `command` is the id a click runs. */
export interface ItemView {
  text: string;
  level: Level;
  label: string;
  tooltip: string;
  command: string | undefined;
}

/**
 * Which properties of an item to send to VS Code now. An item is re-rendered only when its text or level changes
 * (or its label or click, which follow them); otherwise only its tooltip is refreshed, at most every
 * TOOLTIP_REFRESH_MS, and only when it differs. `force`: refresh the tooltip now (its Python lines changed).
 */
export function changedProps(prev: ItemView | undefined, next: ItemView, msSinceTooltip: number,
  force = false): (keyof ItemView)[] {
  if (!prev) return ['text', 'level', 'label', 'tooltip', 'command'];
  const out = (['text', 'level', 'label', 'command'] as const).filter((k) => prev[k] !== next[k]);
  const rendered = out.includes('text') || out.includes('level');
  const tooltipDue = rendered || force || msSinceTooltip >= TOOLTIP_REFRESH_MS;
  return prev.tooltip !== next.tooltip && tooltipDue ? [...out, 'tooltip'] : out;
}
