import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  cleanupSummary, crashPrompt, formatBytes, formatPercent, gpuGaugeText, noDataGaugeText, ramGaugeText,
  stopSummary, tooltipMarkdown,
} from '../../../extension/src/format';
import { transportNote } from '../../../extension/src/monitorTransport';
import type { CleanupReport, GpuInfo } from '../../../extension/src/protocol';
import { run, sample } from './fixtures';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

function report(rssFreed: number, vramFreed: number | null = null): CleanupReport {
  return { pid: 1, rssBefore: 2 * GiB, rssAfter: 2 * GiB - rssFreed, rssFreed, vramBefore: null, vramAfter: null,
    vramFreed, seconds: 0.2, steps: [] };
}

describe('formatBytes', () => {
  it('picks binary units with sensible precision', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.50 KiB');
    assert.equal(formatBytes(25 * MiB), '25.0 MiB');
    assert.equal(formatBytes(300 * MiB), '300 MiB');
    assert.equal(formatBytes(1.25 * GiB), '1.25 GiB');
    assert.equal(formatBytes(-2 * MiB), '-2.00 MiB');
  });
  it('says n/a for missing values', () => {
    assert.equal(formatBytes(null), 'n/a');
    assert.equal(formatBytes(undefined), 'n/a');
    assert.equal(formatBytes(Number.NaN), 'n/a');
  });
});

describe('gauge text', () => {
  it('rounds the RAM percentage', () => {
    assert.equal(ramGaugeText(62.4), '$(pulse) RAM 62%');
    assert.equal(ramGaugeText(62.5), '$(pulse) RAM 63%');
    assert.equal(formatPercent(null), 'n/a');
    assert.equal(formatPercent(3.14159, 1), '3.1%');
  });
  it('numbers VRAM gauges only when there are several GPUs', () => {
    const gpu: GpuInfo = { index: 1, name: 'H200', total: 100, used: 45, percent: 45, utilization: 3, level: 'normal', processes: [] };
    assert.equal(gpuGaugeText(gpu, 1), '$(chip) VRAM 45%');
    assert.equal(gpuGaugeText(gpu, 2), '$(chip) VRAM1 45%');
    assert.equal(gpuGaugeText({ ...gpu, percent: null }, 1), '$(chip) VRAM n/a');
  });
  it('never shows a number without data', () => {
    for (const state of ['starting', 'stale', 'down', 'stopped', 'restricted', 'incompatible'] as const) {
      assert.doesNotMatch(noDataGaugeText(state), /\d/);
    }
    assert.match(noDataGaugeText('down'), /monitor down/);
  });
});

describe('tooltipMarkdown', () => {
  it('has the breakdown: used/available/limit, processes, runs, forecast', () => {
    const md = tooltipMarkdown(sample());
    assert.match(md, /RAM\*\* 62\.5%/);
    assert.match(md, /used 10\.0 GiB, available 6\.00 GiB, limit 16\.0 GiB \(physical RAM\)/);
    assert.match(md, /warning 80%, critical 90%/);
    assert.match(md, /- python \(1\): 3\.00 GiB/);
    assert.match(md, /`brats-safe` running, step 120, micro-batch 2/);
    assert.match(md, /RAM critical in \\~40 s/);
    assert.match(md, /GPU\*\* none \(NVML unavailable/);
  });
  it('names a cgroup limit and lists GPUs', () => {
    const s = sample({
      ram: { ...sample().ram, limitSource: 'cgroup v2' },
      gpus: [{ index: 0, name: 'NVIDIA H200', total: 140 * GiB, used: 14 * GiB, percent: 10, utilization: 50, level: 'warning', processes: [] }],
      runs: [], forecasts: [],
    });
    const md = tooltipMarkdown(s);
    assert.match(md, /cgroup v2 limit/);
    assert.match(md, /GPU 0\*\* NVIDIA H200: 10\.0% \(\*\*warning\*\*\), 14\.0 GiB of 140 GiB, 50% busy/);
    assert.match(md, /Guarded runs\*\*: none/);
    assert.match(md, /Forecast\*\*: steady/);
  });
  it('gives each rank of a distributed run its own line with its own memory', () => {
    const md = tooltipMarkdown(sample({ runs: [
      run({ name: 'ddp', rank: 0, worldSize: 2, pid: 10, treeRss: 3 * GiB, vram: 20 * GiB }),
      run({ name: 'ddp', rank: 1, worldSize: 2, pid: 11, treeRss: 2 * GiB, vram: 18 * GiB }),
    ] }));
    assert.match(md, /`ddp` rank 0\/2 running, step 120, micro-batch 2, RSS 3\.00 GiB, VRAM 20\.0 GiB/);
    assert.match(md, /`ddp` rank 1\/2 running, step 120, micro-batch 2, RSS 2\.00 GiB, VRAM 18\.0 GiB/);
    assert.doesNotMatch(tooltipMarkdown(sample()), /rank/);
  });
  it('limits the process list', () => {
    const procs = Array.from({ length: 10 }, (_, i) => ({ pid: i, name: `p${i}`, rss: GiB }));
    const md = tooltipMarkdown(sample({ topProcesses: procs }), 3);
    assert.equal(md.split('\n').filter((l) => /^- p\d/.test(l)).length, 3);
  });
  it('says when this window runs a memory monitor of its own, after what the platform lacks', () => {
    const md = tooltipMarkdown(sample(), 5, undefined, { platform: '**macOS**: lacks', transport: transportNote('platform') });
    assert.match(md, /\*\*macOS\*\*: lacks\n\n\*\*This platform: one memory monitor per window\*\*/);
    assert.doesNotMatch(tooltipMarkdown(sample(), 5, undefined, { transport: transportNote(undefined) }), /per window/);
  });
});

describe('cleanupSummary', () => {
  it('says what was freed, per run', () => {
    const text = cleanupSummary({
      ramBefore: 10 * GiB, ramAfter: 9 * GiB, freed: GiB, sidecar: report(2 * MiB),
      runs: [{ run: 'brats-safe', rank: 0, pid: 123, ok: true, report: report(800 * MiB, 512 * MiB), error: null, rssBefore: null, rssAfter: null },
        { run: 'other', rank: 0, pid: 9, ok: false, report: null, error: 'timed out', rssBefore: null, rssAfter: null }],
    });
    assert.match(text, /^Emergency cleanup freed 1\.00 GiB of RAM \(used 10\.0 GiB → 9\.00 GiB\)/);
    assert.match(text, /memory monitor 2\.00 MiB/);
    assert.match(text, /run brats-safe: 800 MiB \+ 512 MiB VRAM/);
    assert.match(text, /run other: failed \(timed out\)/);
  });
  it('names the ranks of a distributed run', () => {
    const text = cleanupSummary({
      ramBefore: 10 * GiB, ramAfter: 9 * GiB, freed: GiB, sidecar: report(0),
      runs: [{ run: 'ddp', rank: 0, pid: 10, ok: true, report: report(300 * MiB), error: null, rssBefore: null, rssAfter: null },
        { run: 'ddp', rank: 1, pid: 11, ok: false, report: null, error: 'timed out', rssBefore: null, rssAfter: null }],
    });
    assert.match(text, /run ddp rank 0: 300 MiB; run ddp rank 1: failed \(timed out\)/);
  });
  it('does not claim negative savings', () => {
    const text = cleanupSummary({ ramBefore: GiB, ramAfter: GiB + MiB, freed: -MiB, sidecar: report(0), runs: [] });
    assert.match(text, /freed no measurable RAM/);
    assert.match(text, /no guarded runs/);
  });
});

describe('crash and stop messages', () => {
  it('builds the resume prompt from RunInfo', () => {
    const r = run({ state: 'crashed', alive: false, exitCause: 'killed, signal 9' });
    assert.equal(crashPrompt(r), 'Run brats-safe stopped unexpectedly at step 120 (killed, signal 9). Resume?');
  });
  it('prefers the sidecar message and drops Resume without a config', () => {
    const r = run({ state: 'crashed', alive: false, config: null });
    assert.equal(crashPrompt(r, 'Run brats-safe stopped unexpectedly at step 7 (killed, signal 9)'),
      'Run brats-safe stopped unexpectedly at step 7 (killed, signal 9).');
  });
  it('summarises a stop', () => {
    assert.equal(stopSummary({ run: 'a', ok: true, state: 'stopped', checkpoint: '/c.pt', message: '', signalled: false }),
      'Run a stopped. Checkpoint: /c.pt');
    assert.equal(stopSummary({ run: 'a', ok: false, state: 'running', checkpoint: null, message: 'no answer', signalled: true }),
      'Could not stop a: no answer');
  });
});
