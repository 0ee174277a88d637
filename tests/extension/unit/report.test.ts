// The memory report's pure part: history merging, scaling, series, thresholds, event markers, tables; and the
// crash prompt's exit cause without doubled parentheses.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import * as P from '../../../extension/src/protocol';
import { crashPrompt, exitCauseText } from '../../../extension/src/format';
import type { GpuInfo, HistoryEvent, HistoryPoint, HistoryResult } from '../../../extension/src/protocol';
import { buildView, CHART, eventColor, eventLabel, linePath, mergeEvents, mergePoints, pointFromSample, ReportData,
  scale, tables, timeTicks } from '../../../extension/src/report/model';
import { run, sample } from './fixtures';

const ROOT = path.resolve(__dirname, '../../../../..');
const T0 = 1764400000;

function point(t: number, ram: number, gpus: (number | null)[] = []): HistoryPoint {
  return { time: T0 + t, ramPercent: ram, ramUsed: ram * 1e6, gpuPercent: gpus };
}

function event(t: number, kind: HistoryEvent['kind'], level: string | null, message: string): HistoryEvent {
  return { time: T0 + t, kind, level, message, resource: kind === 'level' ? 'RAM' : null, run: null };
}

function history(points: HistoryPoint[], events: HistoryEvent[] = [], gpuNames: string[] = []): HistoryResult {
  return { points, events, gpuNames, intervalMs: 1000, maxPoints: 900,
    thresholds: { ramWarningPercent: 80, ramCriticalPercent: 90, vramWarningPercent: 85, vramCriticalPercent: 95,
      pressureSomePercent: 20, pressureFullPercent: 10, pressureSeconds: 10 } };
}

describe('report data', () => {
  it('merges history and live points by time, bounded, oldest first', () => {
    const merged = mergePoints([point(0, 1), point(1, 2)], [point(1, 3), point(2, 4), point(-1, 0)], 3);
    assert.deepEqual(merged.map((p) => [p.time - T0, p.ramPercent]), [[0, 1], [1, 3], [2, 4]]);
    const events = mergeEvents([event(5, 'level', 'warning', 'a')], [event(5, 'level', 'warning', 'a'),
      event(1, 'run', 'started', 'b')], 10);
    assert.deepEqual(events.map((e) => e.message), ['b', 'a']);
  });

  it('adds each sample as a point and stays within the sidecar buffer size', () => {
    const data = new ReportData();
    data.addHistory({ ...history([point(0, 10), point(1, 11)]), maxPoints: 3 });
    for (let t = 2; t < 6; t++) data.addSample(sample({ time: T0 + t }));
    assert.deepEqual(data.points.map((p) => p.time - T0), [3, 4, 5]);
    data.addSample(sample({ time: T0 + 4 })); // an old sample (e.g. crashGuard/status) does not duplicate
    assert.equal(data.points.length, 3);
    const gpu: GpuInfo = { index: 0, name: 'NVIDIA H200', total: 100, used: 40, percent: 40, utilization: 0, level: 'normal', processes: [] };
    assert.deepEqual(pointFromSample(sample({ gpus: [gpu] })).gpuPercent, [40]);
  });

  it('keeps one point per interval, the highest, when samples come sooner near the limit', () => {
    const data = new ReportData();
    data.addHistory(history([point(0, 50)]));
    for (const [t, ram] of [[1, 52], [1.5, 70], [1.7, 91], [1.8, 88], [2, 87], [2.95, 60]] as const) {
      data.addSample(sample({ time: T0 + t, ram: { ...sample().ram, percent: ram } }));
    }
    assert.deepEqual(data.points.map((p) => [Math.round((p.time - T0) * 100) / 100, p.ramPercent]),
      [[0, 50], [1.7, 91], [2, 87], [2.95, 60]]);
  });
});

describe('chart layout', () => {
  it('scales linearly and breaks a line where a value is missing', () => {
    const x = scale([0, 10], [100, 200]);
    assert.equal(x(0), 100);
    assert.equal(x(5), 150);
    assert.equal(scale([0, 100], [50, 0])(25), 37.5);
    assert.equal(linePath([[0, 1], [1, 2], [2, null], [3, 4]], (t) => t * 10, (v) => v),
      'M0 1 L10 2 M30 4');
  });

  it('labels time ticks relative to now, at most ~6', () => {
    assert.deepEqual(timeTicks(300).map((t) => t.label), ['now', '-1 min', '-2 min', '-3 min', '-4 min', '-5 min']);
    assert.deepEqual(timeTicks(60).map((t) => t.label), ['now', '-10 s', '-20 s', '-30 s', '-40 s', '-50 s', '-1 min']);
    assert.ok(timeTicks(900).length <= 7);
  });

  it('draws RAM and each GPU over the window, thresholds as dashed lines, events as markers', () => {
    const data = new ReportData();
    const points = Array.from({ length: 400 }, (_, i) => point(i, 50 + (i % 10), [i % 2 ? 30 : null]));
    data.addHistory(history(points, [event(100, 'level', 'warning', 'RAM at 83% (warning at 80%)'),
      event(350, 'training', null, 'brats: oom back-off: micro-batch 4 -> 2'),
      event(390, 'run', 'crashed', 'Run brats stopped unexpectedly')], ['NVIDIA H200']));
    const view = buildView(data, 300, 'sidecar running');
    const { plot } = view.chart;
    assert.equal(view.pointCount, 301); // t = 99 … 399
    assert.deepEqual(view.series.map((s) => [s.id, s.label, s.count]), [['ram', 'RAM', 301], ['gpu0', 'GPU 0 NVIDIA H200', 151]]); // odd t only
    assert.match(view.series[0]!.path, /^M44 /); // starts at the left edge of the plot
    assert.equal((view.series[0]!.path.match(/[ML]/g) ?? []).length, 301);
    assert.equal((view.series[1]!.path.match(/M/g) ?? []).length, 151); // gaps where NVML had no figure
    assert.deepEqual(view.thresholds.map((t) => [t.label, t.dash]), [['RAM warning 80%', '6 4'], ['RAM critical 90%', '6 4'],
      ['VRAM warning 85%', '2 3'], ['VRAM critical 95%', '2 3']]);
    const y80 = plot.y + plot.h * 0.2;
    assert.ok(Math.abs(view.thresholds[0]!.y - y80) < 0.1);
    assert.deepEqual(view.markers.map((m) => [m.kind, m.label, m.color]), [
      ['level', '!', '--vscode-charts-yellow'], ['training', 'O', '--vscode-charts-orange'],
      ['run', '✗', '--vscode-charts-red']]);
    assert.ok(view.markers.every((m) => m.x >= plot.x && m.x <= plot.x + plot.w));
    assert.match(view.markers[1]!.title, /^\d\d:\d\d:\d\d brats: oom back-off/);
    assert.equal(view.events[0]!.message, 'Run brats stopped unexpectedly'); // newest first
    assert.equal(view.chart.width, CHART.width);
    // A shorter window keeps only its points and events.
    const short = buildView(data, 60, 'sidecar running');
    assert.equal(short.pointCount, 61);
    assert.deepEqual(short.markers.map((m) => m.kind), ['training', 'run']);
  });

  it('without GPUs: no VRAM thresholds; without data: an empty chart, not an error', () => {
    const data = new ReportData();
    data.addHistory(history([point(0, 40)]));
    assert.equal(buildView(data, 300, 'x').thresholds.length, 2);
    // A history shorter than the window spans the chart (at least 30 s), rather than a sliver at its right end.
    data.addHistory(history(Array.from({ length: 46 }, (_, i) => point(i, 40))));
    const young = buildView(data, 300, 'x');
    assert.deepEqual(young.xTicks.map((t) => t.label), ['now', '-10 s', '-20 s', '-30 s', '-40 s']);
    assert.match(young.series[0]!.path, /^M44 /);
    assert.equal(buildView(new ReportData(), 300, 'x', T0).xTicks.length, 6);
    const empty = buildView(new ReportData(), 300, 'sidecar starting', T0);
    assert.equal(empty.pointCount, 0);
    assert.equal(empty.series[0]!.path, '');
    assert.equal(empty.thresholds.length, 0);
  });

  it('colours and labels events by kind', () => {
    assert.equal(eventColor({ kind: 'level', level: 'critical' }), '--vscode-charts-red');
    assert.equal(eventColor({ kind: 'level', level: 'normal' }), '--vscode-charts-green');
    assert.equal(eventColor({ kind: 'action', level: 'cleanup' }), '--vscode-charts-purple');
    assert.equal(eventLabel({ kind: 'training', level: null, message: 'r: checkpoint step_120.pt' }), 'C');
    assert.equal(eventLabel({ kind: 'run', level: 'started', message: '' }), '▶');
  });
});

describe('process tables', () => {
  it('lists guarded runs per rank (live first) and the heaviest processes with their share of the limit', () => {
    const s = sample({ runs: [
      run({ name: 'ddp', rank: 1, worldSize: 2, treeRss: 2 ** 30, vram: 3 * 2 ** 30 }),
      run({ name: 'old', state: 'crashed', alive: false, exitCause: 'killed by signal 9 (SIGKILL)' }),
      run({ name: 'ddp', rank: 0, worldSize: 2 }),
    ] });
    const { runs, processes } = tables(s);
    assert.deepEqual(runs.map((r) => r.run), ['ddp (rank 0/2)', 'ddp (rank 1/2)', 'old']);
    assert.equal(runs[1]!.vram, '3.00 GiB');
    assert.equal(runs[1]!.treeRss, '1.00 GiB');
    assert.equal(runs[2]!.state, 'crashed: killed by signal 9, SIGKILL');
    assert.deepEqual(processes[0], { pid: 1, name: 'python', rss: '3.00 GiB', share: '18.8%' });
    assert.deepEqual(tables(undefined), { runs: [], processes: [] });
  });
});

describe('runs the monitor left out (C2)', () => {
  it('says how many, in the summary', () => {
    const data = new ReportData();
    data.addSample(sample({ runsOmitted: 9990 }));
    assert.ok(buildView(data, 300, 'ok').summary.some((l) => /1 listed below; 9,990 more left out/.test(l)));
    const none = new ReportData();
    none.addSample(sample());
    assert.ok(!buildView(none, 300, 'ok').summary.some((l) => /left out/.test(l)));
  });
});

describe('crash prompt', () => {
  it('never nests parentheses, whether the cause is known or not', () => {
    const killed = run({ state: 'crashed', alive: false, exitCause: 'killed by signal 9 (SIGKILL)' });
    assert.equal(crashPrompt(killed), 'Run brats-safe stopped unexpectedly at step 120 (killed by signal 9, SIGKILL). Resume?');
    const unknown = run({ state: 'crashed', alive: false, exitCause: 'unknown (the process ended without recording why)' });
    assert.equal(crashPrompt(unknown),
      'Run brats-safe stopped unexpectedly at step 120 (cause unknown: the process ended without recording why). Resume?');
    assert.equal(exitCauseText('killed, signal 9'), 'killed, signal 9');
    assert.equal(exitCauseText('unknown'), 'cause unknown');
  });

  it('names the checkpoint a resume starts from and the work it redoes', () => {
    const killed = { state: 'crashed' as const, alive: false, exitCause: 'killed by signal 9 (SIGKILL)' };
    assert.equal(crashPrompt(run({ ...killed, step: 52, checkpointStep: 40, checkpointTime: 1000, updated: 1180 })),
      'Run brats-safe stopped unexpectedly at step 52 (killed by signal 9, SIGKILL). ' +
      'Resume from step 40 (12 steps, about 3 min, redone)?');
    assert.equal(crashPrompt(run({ ...killed, step: 41, checkpointStep: 40, checkpointTime: 1000, updated: 1020 })),
      'Run brats-safe stopped unexpectedly at step 41 (killed by signal 9, SIGKILL). ' +
      'Resume from step 40 (1 step, about 20 s, redone)?');
    assert.equal(crashPrompt(run({ ...killed, step: 40, checkpointStep: 40, checkpointTime: 1000, updated: 1001 })),
      'Run brats-safe stopped unexpectedly at step 40 (killed by signal 9, SIGKILL). Resume from step 40?');
    assert.equal(crashPrompt(run({ ...killed, step: 52, checkpointStep: 40, checkpointTime: null })),
      'Run brats-safe stopped unexpectedly at step 52 (killed by signal 9, SIGKILL). Resume from step 40 (12 steps, redone)?');
  });
});

describe('protocol levels', () => {
  it('protocol.ts has every level protocol.py can send (forecasts also "full")', () => {
    const py = fs.readFileSync(path.join(ROOT, 'python_backend', 'crashguard', 'sidecar', 'protocol.py'), 'utf8');
    const m = /^NORMAL, WARNING_LEVEL, CRITICAL, FULL = (.+)$/m.exec(py);
    assert.ok(m, 'level constants in protocol.py');
    const pyLevels = [...m[1]!.matchAll(/"(\w+)"/g)].map((x) => x[1]);
    assert.deepEqual([...P.FORECAST_LEVELS].sort(), [...pyLevels].sort());
    assert.deepEqual([...P.LEVELS].sort(), pyLevels.filter((l) => l !== 'full').sort());
  });
});
