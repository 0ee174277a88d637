// Sample payloads shaped like docs/protocol.md's examples.
import type { RunInfo, Sample } from '../../../extension/src/protocol';

export function run(overrides: Partial<RunInfo> = {}): RunInfo {
  return {
    name: 'brats-safe', dir: '/ws/runs/brats-safe', pid: 123, rank: 0, worldSize: 1, state: 'running', alive: true,
    step: 120, epoch: 3, microBatch: 2, accumulation: 2, loss: 0.41, peakRss: 2 * 2 ** 30, treeRss: 1.5 * 2 ** 30,
    vram: null, lastEvent: 'oom back-off: micro-batch 4 -> 2', exitCause: null, config: '/ws/config/safe_training.json',
    checkpoint: '/ws/runs/brats-safe/checkpoints/step_120.pt', started: 1764399000, updated: 1764400000.1,
    stepSeconds: 0.42, stalledSeconds: 0.6, resumeCommand: null, oomScoreAdj: null, memory: null,
    checkpointStep: null, checkpointTime: null, snapshotBytes: null, crashProof: null, lockHolder: null, ...overrides,
  };
}

export function sample(overrides: Partial<Sample> = {}): Sample {
  const GiB = 2 ** 30;
  return {
    seq: 12, time: 1764400000.1, level: 'normal',
    ram: { total: 16 * GiB, available: 6 * GiB, used: 10 * GiB, percent: 62.5, swapTotal: 0, swapUsed: 0,
      swapPercent: 0, physicalTotal: 16 * GiB, limitSource: 'physical', cgroupPath: null, level: 'normal' },
    gpus: [], gpuReason: 'NVML unavailable: library not found',
    topProcesses: [{ pid: 1, name: 'python', rss: 3 * GiB }, { pid: 2, name: 'code', rss: GiB }],
    runs: [run()],
    forecasts: [{ resource: 'RAM', level: 'critical', seconds: 40, bytesPerSecond: 52428800, message: 'RAM critical in ~40 s',
      kind: 'trend' }],
    thresholds: { ramWarningPercent: 80, ramCriticalPercent: 90, vramWarningPercent: 85, vramCriticalPercent: 95,
      pressureSomePercent: 20, pressureFullPercent: 10, pressureSeconds: 10 },
    costMs: 0.9, pressure: null, pressureReason: null, runsOmitted: 0, ...overrides,
  };
}

/** Text a run's files can hold (issue 21): Markdown, HTML, links VS Code would run as commands, invisible characters. */
export const HOSTILE = [
  '# heading',
  '[click](command:workbench.action.terminal.sendSequence?%7B%22text%22%3A%22rm%20-rf%20~%5Cn%22%7D)',
  '![x](https://attacker.example/pixel.png)',
  '<img src=https://attacker.example/p.png onerror=alert(1)>',
  '<script>alert(1)</script>',
  'see https://attacker.example/x and www.attacker.example',
  'mail me: a@attacker.example',
  '**bold** _it_ `code` ~~gone~~',
  '| a | b |\n|---|---|\n| c | d |',
  'line one\n\n# line two',
  '> quote',
  '1. item',
  '&lt;b&gt; &amp;',
  'x\\',
  '$(alert) icon',
  'left\u202Eevil.exe\u202C right',
  'zero\u200Bwidth',
];
