// The last line of defence as the tooltip and the report show it: memory pressure, a run's OOM score and memory
// cgroup, and a run the kernel's OOM killer took.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { heaviestText, killedByOomKiller, pressureLine, reportDefenceLines, runDefenceParts } from '../../../extension/src/defences';
import { tooltipMarkdown } from '../../../extension/src/format';
import { buildView, ReportData } from '../../../extension/src/report/model';
import type { RunMemory, Sample } from '../../../extension/src/protocol';
import { run, sample } from './fixtures';

const MiB = 2 ** 20;
const memory: RunMemory = {
  cgroup: '/sys/fs/cgroup/user.slice/crashguard-brats-safe-42.scope', version: 2, current: 520 * MiB,
  workingSet: 491 * MiB, max: 1200 * MiB, high: 300 * MiB, highEvents: 14, maxEvents: 0, oomKills: 0, overHigh: 2,
  pressureSome: 23.4, pressureFull: 4.1,
};
const thresholds = { ramWarningPercent: 80, ramCriticalPercent: 90, vramWarningPercent: 85, vramCriticalPercent: 95,
  pressureSomePercent: 20, pressureFullPercent: 5, pressureSeconds: 10 };

function pressured(): Sample {
  return sample({
    level: 'warning', thresholds,
    pressure: { some: 23.4, full: 4.1, seconds: 10, avg10Some: 18.2, avg10Full: 3.0, level: 'warning' },
    runs: [run({ oomScoreAdj: 500, memory })],
    forecasts: [{ resource: 'Memory pressure', level: 'warning', seconds: 0, bytesPerSecond: 0, kind: 'pressure',
      message: 'Memory pressure: stalled 23% of the last 10 s (some) with RAM at 62%: expect slowdowns; the OOM killer may act before RAM looks full' }],
  });
}

describe('defences', () => {
  it('says how much of the window tasks stalled on memory, with the thresholds', () => {
    assert.equal(pressureLine(pressured()),
      '**Memory pressure**: stalled 23% (some), 4% (full) of the last 10 s (**warning**) — warning at 20% (some) / 5% (full)');
    assert.equal(pressureLine(sample()), null); // an older sidecar: nothing said
    assert.equal(pressureLine(sample({ pressure: null, pressureReason: '/proc/pressure/memory does not exist' }), false),
      'Memory pressure n/a (/proc/pressure/memory does not exist)');
  });

  it("lists a run's OOM score and its memory cgroup", () => {
    assert.deepEqual(runDefenceParts(run({ oomScoreAdj: 500, memory })), [
      'oom_score_adj 500', 'cgroup 491 MiB of 1.17 GiB, high 300 MiB', 'over its high mark 2×', 'throttled 14×',
      'stalled 23%']);
    assert.deepEqual(runDefenceParts(run()), []); // an older sidecar's RunInfo
    assert.deepEqual(runDefenceParts(run({ oomScoreAdj: 0, memory: { ...memory, maxEvents: 1, oomKills: 2,
      highEvents: null, overHigh: 0, pressureSome: null } })),
    ['oom_score_adj 0', 'cgroup 491 MiB of 1.17 GiB, high 300 MiB', 'hit its limit 1×', '2 OOM kills in its group']);
  });

  it('puts pressure and the defences into the gauge tooltip', () => {
    const md = tooltipMarkdown(pressured(), 5, undefined, { pressure: pressureLine(pressured()), runParts: runDefenceParts });
    assert.match(md, /\*\*Memory pressure\*\*: stalled 23% \(some\)/);
    assert.match(md, /`brats-safe` running, step 120, .*oom_score_adj 500, cgroup 491 MiB of 1\.17 GiB, high 300 MiB/);
    assert.match(md, /\*\*Forecast\*\*\n\n- Memory pressure\\: stalled 23\\%/);
    assert.doesNotMatch(tooltipMarkdown(sample()), /pressure|oom_score_adj/); // nothing new without the fields
  });

  it('names the OOM killer and the heaviest processes', () => {
    const killed = run({ state: 'crashed', alive: false,
      exitCause: "killed by the kernel's OOM killer (its memory cgroup counted 1 OOM kill)" });
    assert.equal(killedByOomKiller(killed), true);
    assert.equal(killedByOomKiller(run({ exitCause: 'killed by signal 9 (SIGKILL)' })), false);
    assert.equal(heaviestText([{ pid: 4242, name: 'python3', rss: 1.5 * 2 ** 30 }, { pid: 7, name: 'code', rss: 900 * MiB }]),
      'python3 (4242) 1.50 GiB, code (7) 900 MiB');
    assert.deepEqual(reportDefenceLines(sample({ runs: [killed] })), ["Run brats-safe: killed by the kernel's OOM killer"]);
  });

  it('adds the lines to the memory report', () => {
    const data = new ReportData();
    data.addSample(pressured());
    const view = buildView(data, 300, 'live');
    assert.ok(view.summary.includes(
      'Memory pressure: stalled 23% (some), 4% (full) of the last 10 s (warning) — warning at 20% (some) / 5% (full)'));
    assert.ok(view.summary.includes('Run brats-safe: oom_score_adj 500, cgroup 491 MiB of 1.17 GiB, high 300 MiB, ' +
      'over its high mark 2×, throttled 14×, stalled 23%'));
    assert.ok(view.summary.some((l) => l.startsWith('Forecast: Memory pressure: stalled 23%') && !l.includes('/s)')));
  });
});
