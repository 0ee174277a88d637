import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inlineCode } from '../../../extension/src/escape';
import { gpuProcessLines, gpuProcessRows } from '../../../extension/src/gpuProcesses';
import type { GpuInfo } from '../../../extension/src/protocol';
import { buildView, ReportData } from '../../../extension/src/report/model';
import { sample } from './fixtures';

const GiB = 2 ** 30;

function gpu(overrides: Partial<GpuInfo> = {}): GpuInfo {
  return {
    index: 0, name: 'NVIDIA H200', total: 140 * GiB, used: 30 * GiB, percent: 21.4, utilization: 40, level: 'normal',
    processes: [
      { pid: 101, name: 'python3.11', user: 'alice', command: 'python train.py --config a.json', used: 2 * GiB },
      { pid: 202, name: '?', user: null, command: null, used: null },
      { pid: 303, name: 'python3.11', user: 'bob', command: 'python -m crashguard train --config big.json', used: 25 * GiB },
    ],
    ...overrides,
  };
}

describe('who holds the VRAM: tooltip lines', () => {
  it('lists the heaviest first with user and command, and a process the memory monitor cannot see', () => {
    assert.deepEqual(gpuProcessLines(gpu()), [
      '', '**Who holds the VRAM**', '',
      '- 25.0 GiB python3\\.11 (303, bob) — `python -m crashguard train --config big.json`',
      '- 2.00 GiB python3\\.11 (101, alice) — `python train.py --config a.json`',
      '- n/a \\? (202, not visible to the memory monitor)',
    ]);
  });

  it('caps the list and says how many more', () => {
    const lines = gpuProcessLines(gpu(), 1);
    assert.equal(lines[lines.length - 1], '- … and 2 more (see the memory report)');
  });

  it('tells "none" from "unknown" (an older sidecar sends no list)', () => {
    assert.deepEqual(gpuProcessLines(gpu({ processes: [] })), ['', 'No process holds memory on this GPU.']);
    assert.deepEqual(gpuProcessLines(gpu({ processes: undefined })), []);
  });

  it('keeps a command line with backticks or Markdown inert', () => {
    assert.equal(inlineCode('echo `id` *x*'), '``echo `id` *x*``');
    assert.equal(inlineCode('`a`'), '`` `a` ``');
    const long = gpuProcessLines(gpu({ processes: [{ pid: 1, name: 'sh', user: 'u', command: 'x'.repeat(200), used: 1 }] }));
    assert.match(long[3] ?? '', /`x{79}…`$/);
  });
});

describe('who holds the VRAM: report rows', () => {
  it('one row per process on every GPU', () => {
    const s = sample({ gpus: [gpu(), gpu({ index: 1, processes: [] })] });
    assert.deepEqual(gpuProcessRows(s).map((r) => [r.gpu, r.pid, r.user, r.vram]), [
      ['GPU 0', 303, 'bob', '25.0 GiB'], ['GPU 0', 101, 'alice', '2.00 GiB'],
      ['GPU 0', 202, 'not visible to the memory monitor', 'n/a'],
    ]);
    assert.deepEqual(gpuProcessRows(undefined), []);
  });

  it('reach the report view', () => {
    const data = new ReportData();
    data.addSample(sample({ gpus: [gpu()] }));
    assert.equal(buildView(data, 60, 'live').gpuProcesses.length, 3);
  });
});
