// The memory report's data and chart layout, pure (no 'vscode', no DOM): the history kept here (points from
// crashGuard/history and from each crashGuard/sample, events from crashGuard/history), and the view the webview
// draws as it is (SVG shapes in chart coordinates, rows of the tables). media/report.js only renders a ReportView.
import { reportDefenceLines } from '../defences';
import { exitCauseText, formatBytes, formatPercent, formatSeconds } from '../format';
import { type GpuProcessRow, gpuProcessRows } from '../gpuProcesses';
import type { HistoryEvent, HistoryPoint, HistoryResult, RunInfo, Sample, Thresholds } from '../protocol';

export const WINDOWS_SECONDS = [60, 300, 900] as const;
export const DEFAULT_WINDOW_SECONDS = 300;
const DEFAULT_MAX_POINTS = 3600;
/** Samples closer than this share of the interval share one point (the sidecar's history.py SLOT_SHARE). */
const SLOT_SHARE = 0.9;
const MAX_EVENTS = 500;
const EVENT_ROWS = 15;
/** A history shorter than the window is drawn over its own length (at least this many seconds), not squeezed. */
const MIN_SPAN_SECONDS = 30;

export const CHART = { width: 960, height: 300, left: 44, right: 16, top: 14, bottom: 26 } as const;

/** Theme colours (CSS variables the webview resolves). */
const SERIES_COLORS = ['--vscode-charts-blue', '--vscode-charts-purple', '--vscode-charts-green',
  '--vscode-charts-orange', '--vscode-charts-foreground'];
const WARNING_COLOR = '--vscode-charts-yellow';
const CRITICAL_COLOR = '--vscode-charts-red';
const NORMAL_COLOR = '--vscode-charts-green';

export interface SeriesView { id: string; label: string; color: string; path: string; last: string; count: number }
export interface ThresholdView { label: string; y: number; color: string; dash: string }
export interface TickView { pos: number; label: string }
export interface MarkerView { x: number; color: string; label: string; title: string; kind: HistoryEvent['kind'] }
export interface EventRow { time: string; kind: string; message: string; color: string }
export interface RunRow { run: string; state: string; step: string; microBatch: string; treeRss: string; vram: string;
  lastEvent: string }
export interface ProcessRow { pid: number; name: string; rss: string; share: string }

export interface ReportView {
  windowSeconds: number;
  /** RAM points inside the window (the e2e test and the empty-chart message read it). */
  pointCount: number;
  chart: { width: number; height: number; plot: { x: number; y: number; w: number; h: number } };
  series: SeriesView[];
  thresholds: ThresholdView[];
  xTicks: TickView[];
  yTicks: TickView[];
  markers: MarkerView[];
  summary: string[];
  events: EventRow[];
  runs: RunRow[];
  processes: ProcessRow[];
  gpuProcesses: GpuProcessRow[];
  status: string;
}

/** The compact point a sample adds to the chart (same shape as the sidecar's history). */
export function pointFromSample(sample: Sample): HistoryPoint {
  return { time: Math.round(sample.time * 1000) / 1000, ramPercent: sample.ram.percent, ramUsed: sample.ram.used,
    gpuPercent: sample.gpus.map((g) => g.percent) };
}

function eventKey(e: HistoryEvent): string {
  return `${e.time.toFixed(3)}|${e.kind}|${e.message}`;
}

/** What the report keeps between the sidecar's history and the live samples. */
export class ReportData {
  points: HistoryPoint[] = [];
  events: HistoryEvent[] = [];
  thresholds: Thresholds | undefined;
  gpuNames: string[] = [];
  maxPoints = DEFAULT_MAX_POINTS;
  /** The configured sample interval: near the limit samples come faster, and one point per interval is kept. */
  intervalMs = 1000;
  latest: Sample | undefined;
  private slotStart = -Infinity;

  /** A crashGuard/history answer: merged with what is here (a restarted sidecar has a shorter history). */
  addHistory(h: HistoryResult): void {
    this.maxPoints = Math.max(1, h.maxPoints);
    this.intervalMs = h.intervalMs;
    this.thresholds = h.thresholds;
    if (h.gpuNames.length > 0 || this.gpuNames.length === 0) this.gpuNames = h.gpuNames;
    this.points = mergePoints(this.points, h.points, this.maxPoints);
    this.events = mergeEvents(this.events, h.events, MAX_EVENTS);
    this.slotStart = this.points[this.points.length - 1]?.time ?? -Infinity;
  }

  addSample(sample: Sample): void {
    this.latest = sample;
    this.thresholds = sample.thresholds;
    this.gpuNames = sample.gpus.map((g) => g.name);
    const point = pointFromSample(sample);
    const last = this.points[this.points.length - 1];
    if (last !== undefined && point.time > last.time && point.time - this.slotStart < SLOT_SHARE * this.intervalMs / 1000) {
      // Sampled sooner than the interval (near the limit): the interval's point is its highest RAM use.
      if (point.ramPercent > last.ramPercent) this.points[this.points.length - 1] = point;
    } else if (last === undefined || point.time > last.time) {
      this.slotStart = point.time;
      this.points.push(point);
      if (this.points.length > this.maxPoints) this.points.splice(0, this.points.length - this.maxPoints);
    } else {
      this.points = mergePoints(this.points, [point], this.maxPoints);
    }
  }
}

/** Union by time, oldest first, the newest `max` kept. */
export function mergePoints(a: readonly HistoryPoint[], b: readonly HistoryPoint[], max: number): HistoryPoint[] {
  const byTime = new Map<number, HistoryPoint>();
  for (const p of a) byTime.set(p.time, p);
  for (const p of b) byTime.set(p.time, p);
  const out = [...byTime.values()].sort((x, y) => x.time - y.time);
  return out.length > max ? out.slice(out.length - max) : out;
}

export function mergeEvents(a: readonly HistoryEvent[], b: readonly HistoryEvent[], max: number): HistoryEvent[] {
  const byKey = new Map<string, HistoryEvent>();
  for (const e of a) byKey.set(eventKey(e), e);
  for (const e of b) byKey.set(eventKey(e), e);
  const out = [...byKey.values()].sort((x, y) => x.time - y.time);
  return out.length > max ? out.slice(out.length - max) : out;
}

/** Linear map of `domain` onto `range`. */
export function scale(domain: readonly [number, number], range: readonly [number, number]): (v: number) => number {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

const round1 = (v: number): number => Math.round(v * 10) / 10;

/** An SVG path through the values; a null (no reading) breaks the line. */
export function linePath(points: readonly (readonly [number, number | null])[], x: (t: number) => number,
  y: (v: number) => number): string {
  const parts: string[] = [];
  let pen = false;
  for (const [t, v] of points) {
    if (v === null) {
      pen = false;
      continue;
    }
    parts.push(`${pen ? 'L' : 'M'}${round1(x(t))} ${round1(y(v))}`);
    pen = true;
  }
  return parts.join(' ');
}

/** Ticks of the time axis, labelled relative to `now` ("-4 min" … "now"), at most ~6. */
export function timeTicks(windowSeconds: number): { offset: number; label: string }[] {
  const step = [5, 10, 15, 30, 60, 120, 300, 600].find((s) => windowSeconds / s <= 6) ?? 900;
  const ticks: { offset: number; label: string }[] = [];
  for (let off = 0; off <= windowSeconds + 1e-9; off += step) {
    const label = off === 0 ? 'now' : off % 60 === 0 ? `-${off / 60} min` : `-${off} s`;
    ticks.push({ offset: off, label });
  }
  return ticks;
}

export function eventColor(e: Pick<HistoryEvent, 'kind' | 'level'>): string {
  switch (e.kind) {
    case 'level':
      return e.level === 'critical' ? CRITICAL_COLOR : e.level === 'warning' ? WARNING_COLOR : NORMAL_COLOR;
    case 'run':
      return e.level === 'crashed' || e.level === 'failed' ? CRITICAL_COLOR
        : e.level === 'started' ? '--vscode-charts-blue' : NORMAL_COLOR;
    case 'training':
      return '--vscode-charts-orange';
    case 'action':
      return '--vscode-charts-purple';
  }
}

/** A one-or-two-character label drawn on the marker (the full message is its tooltip and in the list). */
export function eventLabel(e: Pick<HistoryEvent, 'kind' | 'level' | 'message'>): string {
  switch (e.kind) {
    case 'level': return e.level === 'normal' ? '✓' : '!';
    case 'run': return e.level === 'crashed' || e.level === 'failed' ? '✗' : e.level === 'started' ? '▶' : '■';
    case 'training': return /oom|back-?off/i.test(e.message) ? 'O' : /checkpoint/i.test(e.message) ? 'C' : 'T';
    case 'action': return 'A';
  }
}

function clock(t: number): string {
  return new Date(t * 1000).toISOString().slice(11, 19);
}

function runRow(run: RunInfo): RunRow {
  const rank = run.worldSize > 1 ? ` (rank ${run.rank}/${run.worldSize})` : '';
  const cause = run.exitCause ? `: ${exitCauseText(run.exitCause)}` : '';
  return {
    run: `${run.name}${rank}`,
    state: `${run.state}${run.alive ? '' : run.state === 'running' ? ' (gone)' : ''}${run.state === 'crashed' ? cause : ''}`,
    step: run.step === null ? '–' : String(run.step),
    microBatch: run.microBatch === null ? '–' : String(run.microBatch),
    treeRss: run.treeRss === null ? '–' : formatBytes(run.treeRss),
    vram: run.vram === null ? '–' : formatBytes(run.vram),
    lastEvent: run.lastEvent ?? '',
  };
}

/** The per-process tables: guarded runs (one row per rank) and the heaviest processes. */
export function tables(sample: Sample | undefined): { runs: RunRow[]; processes: ProcessRow[] } {
  if (!sample) return { runs: [], processes: [] };
  const runs = [...sample.runs].sort((a, b) => Number(b.alive) - Number(a.alive) || a.name.localeCompare(b.name) ||
    a.rank - b.rank).map(runRow);
  const processes = sample.topProcesses.map((p) => ({ pid: p.pid, name: p.name, rss: formatBytes(p.rss),
    share: sample.ram.total > 0 ? formatPercent((100 * p.rss) / sample.ram.total, 1) : 'n/a' }));
  return { runs, processes };
}

function summary(sample: Sample | undefined): string[] {
  if (!sample) return [];
  const r = sample.ram;
  const limit = r.limitSource === 'cgroup' ? 'cgroup limit' : 'physical RAM';
  const lines = [`RAM ${formatPercent(r.percent, 1)} (${r.level}): ${formatBytes(r.used)} used of ${formatBytes(r.total)} ` +
    `(${limit}), ${formatBytes(r.available)} available`];
  for (const g of sample.gpus) {
    lines.push(`GPU ${g.index} ${g.name}: ${formatPercent(g.percent, 1)} (${g.level}), ` +
      `${formatBytes(g.used)} of ${formatBytes(g.total)}`);
  }
  if (sample.gpus.length === 0 && sample.gpuReason) lines.push(`No GPU figures: ${sample.gpuReason}`);
  for (const f of sample.forecasts) {
    lines.push(f.kind === 'pressure' ? `Forecast: ${f.message}` : `Forecast: ${f.message} (${formatBytes(f.bytesPerSecond)}/s)`);
  }
  lines.push(...reportDefenceLines(sample));
  if (sample.runsOmitted > 0) {
    lines.push(`Guarded runs: ${sample.runs.length} listed below; ${sample.runsOmitted.toLocaleString('en-US')} more ` +
      'left out of the sample (the monitor bounds each sample, live and most recent runs first)');
  }
  return lines;
}

/** Everything the webview draws, for a window of `windowSeconds` ending at the newest point (or `now`); a shorter
 *  history spans the chart from its first point. */
export function buildView(data: ReportData, windowSeconds: number, status: string, now?: number): ReportView {
  const { width, height, left, right, top, bottom } = CHART;
  const plot = { x: left, y: top, w: width - left - right, h: height - top - bottom };
  const end = now ?? data.points[data.points.length - 1]?.time ?? Date.now() / 1000;
  const first = data.points[0]?.time;
  const span = first === undefined ? windowSeconds
    : Math.min(windowSeconds, Math.max(MIN_SPAN_SECONDS, Math.ceil(end - first)));
  const start = end - span;
  const x = scale([start, end], [plot.x, plot.x + plot.w]);
  const y = scale([0, 100], [plot.y + plot.h, plot.y]);
  const inWindow = data.points.filter((p) => p.time >= start && p.time <= end);

  const series: SeriesView[] = [];
  const last = inWindow[inWindow.length - 1];
  series.push({ id: 'ram', label: 'RAM', color: SERIES_COLORS[0] ?? '', count: inWindow.length,
    path: linePath(inWindow.map((p) => [p.time, p.ramPercent]), x, y),
    last: last ? formatPercent(last.ramPercent, 1) : 'n/a' });
  const gpuCount = Math.max(data.gpuNames.length, ...inWindow.map((p) => p.gpuPercent.length));
  for (let i = 0; i < gpuCount; i++) {
    const values = inWindow.map((p) => [p.time, p.gpuPercent[i] ?? null] as const);
    series.push({ id: `gpu${i}`, label: `GPU ${i}${data.gpuNames[i] ? ` ${data.gpuNames[i]}` : ''}`,
      color: SERIES_COLORS[(i + 1) % SERIES_COLORS.length] ?? '', count: values.filter(([, v]) => v !== null).length,
      path: linePath(values, x, y), last: formatPercent(last?.gpuPercent[i] ?? null, 1) });
  }

  const thresholds: ThresholdView[] = [];
  const th = data.thresholds;
  if (th) {
    thresholds.push({ label: `RAM warning ${th.ramWarningPercent}%`, y: round1(y(th.ramWarningPercent)), color: WARNING_COLOR, dash: '6 4' },
      { label: `RAM critical ${th.ramCriticalPercent}%`, y: round1(y(th.ramCriticalPercent)), color: CRITICAL_COLOR, dash: '6 4' });
    if (gpuCount > 0) {
      thresholds.push({ label: `VRAM warning ${th.vramWarningPercent}%`, y: round1(y(th.vramWarningPercent)), color: WARNING_COLOR, dash: '2 3' },
        { label: `VRAM critical ${th.vramCriticalPercent}%`, y: round1(y(th.vramCriticalPercent)), color: CRITICAL_COLOR, dash: '2 3' });
    }
  }

  const events = data.events.filter((e) => e.time >= start && e.time <= end);
  const markers = events.map((e) => ({ x: round1(x(e.time)), color: eventColor(e), label: eventLabel(e),
    title: `${clock(e.time)} ${e.message}`, kind: e.kind }));
  const { runs, processes } = tables(data.latest);
  return {
    windowSeconds, pointCount: inWindow.length,
    chart: { width, height, plot },
    series, thresholds, markers,
    xTicks: timeTicks(span).map((tk) => ({ pos: round1(x(end - tk.offset)), label: tk.label })),
    yTicks: [0, 25, 50, 75, 100].map((v) => ({ pos: round1(y(v)), label: `${v}%` })),
    summary: summary(data.latest),
    events: data.events.slice(-EVENT_ROWS).reverse().map((e) => ({ time: clock(e.time), kind: e.kind, message: e.message,
      color: eventColor(e) })),
    runs, processes, gpuProcesses: gpuProcessRows(data.latest),
    status: `${status} · ${inWindow.length} samples in the last ${formatSeconds(windowSeconds)} · ` +
      `history keeps ${data.maxPoints} samples`,
  };
}
