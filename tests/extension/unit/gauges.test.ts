// The status-bar gauges as data (gauges.ts): how many VRAM items, their text, icon and label, and when an item is
// sent to VS Code again.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AUTO_EACH_UP_TO, changedProps, gpuGauges, gpusTableMarkdown, noDataGauge, ramGauge, TOOLTIP_REFRESH_MS, worstGpu,
  type ItemView,
} from '../../../extension/src/gauges';
import type { SidecarState } from '../../../extension/src/format';
import type { GpuInfo, Level } from '../../../extension/src/protocol';
import { sample } from './fixtures';

const GiB = 2 ** 30;
function gpu(index: number, percent: number | null, level: Level = 'normal', name = 'NVIDIA A100'): GpuInfo {
  return { index, name, total: 80 * GiB, used: percent === null ? null : (percent / 100) * 80 * GiB, percent,
    utilization: 50, level, processes: [] };
}
const eight = [gpu(0, 20), gpu(1, 91, 'warning'), gpu(2, 40), gpu(3, 96.5, 'critical'), gpu(4, 99, 'critical'),
  gpu(5, 10), gpu(6, null), gpu(7, 60)];

describe('VRAM in the status bar', () => {
  it('8 GPUs → one item by default (auto), showing the fullest GPU, every GPU in its tooltip', () => {
    const items = gpuGauges(eight, 'auto');
    assert.equal(items.length, 1);
    const [item] = items;
    assert.equal(item!.text, '$(error) VRAM4 99% (max of 8)');
    assert.equal(item!.level, 'critical');
    assert.equal(item!.gpus.length, 8);
    const tip = gpusTableMarkdown(item!.gpus, sample({ gpus: eight }));
    for (const g of eight) assert.match(tip, new RegExp(`\\| ${g.index} NVIDIA A100 \\|`));
    assert.match(tip, /the fullest: GPU 4 \(\*\*CRITICAL\*\*\)/);
  });
  it('up to 2 GPUs → one item each by default; "each", "worst" and "off" as set', () => {
    assert.equal(AUTO_EACH_UP_TO, 2);
    assert.deepEqual(gpuGauges([gpu(0, 10), gpu(1, 20)], 'auto').map((g) => g.text), ['$(chip) VRAM0 10%', '$(chip) VRAM1 20%']);
    assert.equal(gpuGauges([gpu(0, 10), gpu(1, 20), gpu(2, 30)], 'auto').length, 1);
    assert.equal(gpuGauges(eight, 'each').length, 8);
    assert.deepEqual(gpuGauges(eight, 'each').map((g) => g.id), eight.map((g) => `crashGuard.vram${g.index}`));
    assert.equal(gpuGauges([gpu(0, 10), gpu(1, 20)], 'worst').length, 1);
    assert.deepEqual(gpuGauges(eight, 'off'), []);
    assert.deepEqual(gpuGauges([], 'each'), []);
    assert.equal(gpuGauges([gpu(0, 45)], 'auto')[0]!.text, '$(chip) VRAM 45%');
  });
  it('the worst GPU is the highest level, then the fullest', () => {
    assert.equal(worstGpu(eight)?.index, 4);
    assert.equal(worstGpu([gpu(0, 99), gpu(1, 86, 'warning')])?.index, 1, 'a level (hysteresis) beats a bare percent');
    assert.equal(worstGpu([gpu(0, null), gpu(1, 5)])?.index, 1);
    assert.equal(worstGpu([]), undefined);
  });
  it('escapes a GPU name in the table', () => {
    const tip = gpusTableMarkdown([gpu(0, 1, 'normal', 'a|b*c'), gpu(1, 2)], sample());
    assert.match(tip, /\| 0 a\\\|b\\\*c \|/);
  });
});

describe('levels are not shown by colour alone', () => {
  it('the RAM and VRAM icons change at warning and critical', () => {
    const at = (level: Level): string => ramGauge(sample({ ram: { ...sample().ram, level } })).text;
    assert.equal(at('normal'), '$(pulse) RAM 63%');
    assert.equal(at('warning'), '$(warning) RAM 63%');
    assert.equal(at('critical'), '$(error) RAM 63%');
    assert.deepEqual(gpuGauges([gpu(0, 10), gpu(1, 90, 'warning')], 'each').map((g) => g.text.split(' ')[0]), ['$(chip)', '$(warning)']);
  });
  it('a sustained memory stall is a warning (icon and level) below the percent threshold', () => {
    const g = ramGauge(sample({ pressure: { some: 30, full: 5, seconds: 10, level: 'warning' } as never }));
    assert.equal(g.level, 'warning');
    assert.match(g.text, /^\$\(warning\)/);
  });
  it('every item has an accessibility label that says the level in words', () => {
    assert.equal(ramGauge(sample()).label, 'Crash Guard: RAM 63% used');
    assert.equal(ramGauge(sample({ ram: { ...sample().ram, level: 'critical' } })).label, 'Crash Guard: RAM 63% used, critical');
    assert.equal(gpuGauges(eight, 'auto')[0]!.label, 'Crash Guard: the fullest of 8 GPUs, GPU 4: VRAM 99% used, critical');
    assert.equal(gpuGauges([gpu(1, 91, 'warning')], 'each')[0]!.label, 'Crash Guard: GPU 1: VRAM 91% used, warning');
    const states: Exclude<SidecarState, 'running'>[] = ['starting', 'stale', 'down', 'stopped', 'restricted', 'incompatible', 'noPython'];
    for (const s of states) {
      const g = noDataGauge(s);
      assert.ok(g.label.length > 8 && !g.label.includes('$('), `${s}: "${g.label}"`);
      assert.equal(g.level, 'normal', `${s}: never coloured without a sample`);
    }
    assert.equal(noDataGauge('noPython').label, 'Crash Guard RAM: needs Python 3.10+');
  });
});

describe('an item is sent again only when its text or level changes', () => {
  const view = (over: Partial<ItemView> = {}): ItemView =>
    ({ text: '$(pulse) RAM 63%', level: 'normal', label: 'RAM 63%', tooltip: 'used 10 GiB', command: 'c', ...over });
  it('sends everything the first time, nothing for the same view', () => {
    assert.deepEqual(changedProps(undefined, view(), 0), ['text', 'level', 'label', 'tooltip', 'command']);
    assert.deepEqual(changedProps(view(), view(), 60_000), []);
  });
  it('a tooltip whose numbers moved waits TOOLTIP_REFRESH_MS while the text stays', () => {
    assert.deepEqual(changedProps(view(), view({ tooltip: 'used 10.1 GiB' }), TOOLTIP_REFRESH_MS - 1), []);
    assert.deepEqual(changedProps(view(), view({ tooltip: 'used 10.1 GiB' }), TOOLTIP_REFRESH_MS), ['tooltip']);
    assert.deepEqual(changedProps(view(), view({ tooltip: 'used 10.1 GiB' }), 0, true), ['tooltip'], 'forced');
  });
  it('a new text or level re-renders the item with its tooltip at once', () => {
    assert.deepEqual(changedProps(view(), view({ text: '$(pulse) RAM 64%', label: 'RAM 64%', tooltip: 'x' }), 0),
      ['text', 'label', 'tooltip']);
    assert.deepEqual(changedProps(view(), view({ level: 'warning', tooltip: 'x' }), 0), ['level', 'tooltip']);
  });
  it('a steady 8-GPU box re-renders nothing between samples', () => {
    const s1 = gpuGauges(eight, 'auto')[0]!;
    const s2 = gpuGauges(eight.map((g) => ({ ...g, used: (g.used ?? 0) + 1 })), 'auto')[0]!;
    const v = (g: typeof s1): ItemView => ({ text: g.text, level: g.level, label: g.label, tooltip: 't', command: 'c' });
    assert.deepEqual(changedProps(v(s1), v(s2), 1000), []);
  });
});
