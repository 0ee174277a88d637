import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  chooseRunsDirectory, DEFAULTS, diffSettings, isInside, resolveExisting, resolveSettings, runsDirectoryOf, sidecarSettings,
  SIDECAR_KEYS,
} from '../../../extension/src/settings';

const reader = (values: Record<string, unknown>) => (key: string) => values[key];

describe('resolveSettings', () => {
  it('falls back to the defaults (which match docs/protocol.md)', () => {
    const { settings, problems } = resolveSettings(reader({}));
    assert.deepEqual(settings, DEFAULTS);
    assert.deepEqual(problems, []);
    assert.deepEqual(sidecarSettings(settings, ['/a/runs', '/b/out', '/a/runs']), {
      sampleIntervalMs: 1000, ramWarningPercent: 80, ramCriticalPercent: 90, vramWarningPercent: 85,
      vramCriticalPercent: 95, autoCleanup: false, criticalAction: 'none', runsDirectories: ['/a/runs', '/b/out'],
      topProcesses: 5, hungAfterSeconds: 120,
      pressureSomePercent: 20, pressureFullPercent: 10, pressureSeconds: 10,
    });
  });
  it('takes valid values', () => {
    const { settings, problems } = resolveSettings(reader({
      pythonPath: ' /opt/py/bin/python ', sampleIntervalMs: 500, ramWarningPercent: 1, ramCriticalPercent: 95,
      autoCleanup: true, criticalAction: 'checkpointAndStop', showNotifications: false, runsDirectory: 'out/runs',
    }));
    assert.deepEqual(problems, []);
    assert.equal(settings.pythonPath, '/opt/py/bin/python');
    assert.equal(settings.sampleIntervalMs, 500);
    assert.equal(settings.ramWarningPercent, 1);
    assert.equal(settings.criticalAction, 'checkpointAndStop');
    assert.equal(settings.showNotifications, false);
    assert.equal(settings.runsDirectory, 'out/runs');
  });
  it('clamps out-of-range numbers, rounds integers and reports each problem', () => {
    const { settings, problems } = resolveSettings(reader({ sampleIntervalMs: 50, ramWarningPercent: 150,
      topProcesses: 3.6, vramWarningPercent: 'high' }));
    assert.equal(settings.sampleIntervalMs, 200);
    assert.equal(settings.ramWarningPercent, 80); // clamped to 100, above critical 90: the pair is refused
    assert.equal(settings.ramCriticalPercent, 90);
    assert.equal(settings.topProcesses, 4);
    assert.equal(settings.vramWarningPercent, 85);
    assert.equal(problems.length, 4);
    assert.ok(problems.some((p) => p.includes('crashGuard.sampleIntervalMs')));
    assert.ok(problems.some((p) => p.includes('crashGuard.vramWarningPercent')));
    assert.ok(problems.some((p) => p.includes('crashGuard.ramCriticalPercent (90) is below crashGuard.ramWarningPercent (100)')));
  });
  it('refuses a critical level below its warning level: the pair in force stays (as the monitor does)', () => {
    const first = resolveSettings(reader({ vramWarningPercent: 90, vramCriticalPercent: 50 }));
    assert.deepEqual([first.settings.vramWarningPercent, first.settings.vramCriticalPercent], [85, 95]); // the defaults
    assert.deepEqual(first.problems, ['crashGuard.vramCriticalPercent (50) is below crashGuard.vramWarningPercent (90): ' +
      'the VRAM levels stay at 85 / 95 %']);
    const inForce = resolveSettings(reader({ ramWarningPercent: 60, ramCriticalPercent: 70 })).settings;
    const next = resolveSettings(reader({ ramWarningPercent: 60, ramCriticalPercent: 50 }), inForce);
    assert.deepEqual([next.settings.ramWarningPercent, next.settings.ramCriticalPercent], [60, 70]);
    assert.equal(resolveSettings(reader({ ramWarningPercent: 70, ramCriticalPercent: 70 })).problems.length, 0);
  });
  it('rejects unknown critical actions and wrong types', () => {
    const { settings, problems } = resolveSettings(reader({ criticalAction: 'kill', autoCleanup: 'yes', runsDirectory: 7 }));
    assert.equal(settings.criticalAction, 'none');
    assert.equal(settings.autoCleanup, false);
    assert.equal(settings.runsDirectory, 'runs');
    assert.equal(problems.length, 3);
  });
  it('keeps an empty runs directory from reaching the sidecar', () => {
    assert.equal(resolveSettings(reader({ runsDirectory: '  ' })).settings.runsDirectory, 'runs');
  });
  it('makes each folder\'s runs directory absolute', () => {
    assert.equal(runsDirectoryOf('/ws/a', 'runs'), '/ws/a/runs');
    assert.equal(runsDirectoryOf('/ws/a', '../shared/runs'), '/ws/shared/runs');
    assert.equal(runsDirectoryOf('/ws/a', '/data/runs'), '/data/runs');
    assert.equal(runsDirectoryOf('/ws/a', '~/runs', '/home/u'), '/home/u/runs');
    assert.equal(runsDirectoryOf('/ws/a', ''), '/ws/a/runs');
  });
});

describe('runs directories from workspace settings stay inside the folder (C3; issue 21, class 9)', () => {
  // A real tree: two projects side by side, and a symlink inside one that leads to the other's runs.
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'crashguard-scope-')));
  const mine = path.join(root, 'mine');
  const other = path.join(root, 'other');
  fs.mkdirSync(path.join(mine, 'runs'), { recursive: true });
  fs.mkdirSync(path.join(other, 'runs'), { recursive: true });
  fs.symlinkSync(path.join(other, 'runs'), path.join(mine, 'innocent'));
  const real = (p: string): string => fs.realpathSync.native(p);
  const choose = (values: object, home = '/home/u') => chooseRunsDirectory(mine, { defaultValue: 'runs', ...values }, real, home);

  it('takes a folder value that stays inside the folder', () => {
    assert.deepEqual(choose({ workspaceFolderValue: 'runs' }), { dir: path.join(mine, 'runs'), setting: 'runs' });
    assert.deepEqual(choose({ workspaceValue: 'out/runs' }), { dir: path.join(mine, 'out', 'runs'), setting: 'out/runs' });
    assert.deepEqual(choose({}), { dir: path.join(mine, 'runs'), setting: 'runs' });
  });
  it('refuses a folder or workspace value that leads outside it, by path or through a symlink', () => {
    for (const [values, where] of [
      [{ workspaceFolderValue: '../other/runs' }, path.join(other, 'runs')],
      [{ workspaceValue: path.join(other, 'runs') }, path.join(other, 'runs')],
      [{ workspaceFolderValue: 'innocent' }, path.join(other, 'runs')],
      [{ workspaceFolderValue: 'innocent/new/deeper' }, path.join(other, 'runs', 'new', 'deeper')],
      [{ workspaceFolderValue: '~/runs' }, '/home/u/runs'],
    ] as const) {
      const choice = choose(values);
      assert.equal(choice.dir, path.join(mine, 'runs'), JSON.stringify(values));
      assert.equal(choice.setting, 'runs');
      assert.ok(choice.refused?.includes(where), `${JSON.stringify(values)}: ${choice.refused ?? 'not refused'}`);
      assert.match(choice.refused ?? '', /crashGuard\.runsDirectory .* points outside that folder/);
    }
    // The folder's value wins over the workspace's, and is the one checked.
    assert.ok(choose({ workspaceValue: 'runs', workspaceFolderValue: '../other/runs' }).refused);
  });
  it('lets the user\'s own settings point anywhere, and falls back to them', () => {
    assert.deepEqual(choose({ globalValue: path.join(other, 'runs') }), { dir: path.join(other, 'runs'), setting: path.join(other, 'runs') });
    const fallback = choose({ globalValue: '/data/runs', workspaceFolderValue: '../other/runs' });
    assert.equal(fallback.dir, '/data/runs');
    assert.ok(fallback.refused);
  });
  it('resolves what exists through symlinks and keeps the rest', () => {
    assert.equal(resolveExisting(path.join(mine, 'innocent', 'a', 'b'), real), path.join(other, 'runs', 'a', 'b'));
    assert.equal(isInside('/a/b', '/a/b'), true);
    assert.equal(isInside('/a/b', '/a/b/c'), true);
    assert.equal(isInside('/a/b', '/a/bc'), false);
    assert.equal(isInside('/a/b', '/a'), false);
  });
});

describe('diffSettings', () => {
  it('restarts only for the interpreter, and lists changed sidecar keys', () => {
    const a = resolveSettings(reader({})).settings;
    const b = resolveSettings(reader({ ramWarningPercent: 1, showNotifications: false })).settings;
    assert.deepEqual(diffSettings(a, b), { restart: false, reconnect: false, sidecar: { ramWarningPercent: 1 } });
    const c = resolveSettings(reader({ pythonPath: '/x/python' })).settings;
    assert.deepEqual(diffSettings(a, c), { restart: true, reconnect: false, sidecar: {} });
    const d = resolveSettings(reader({ runsDirectory: 'out' })).settings;
    assert.deepEqual(diffSettings(a, d), { restart: false, reconnect: false, sidecar: { runsDirectory: 'out' } });
  });
  it('reconnects (its own monitor, or back to the shared one) when crashGuard.monitorPerWindow changes', () => {
    const shared = resolveSettings(reader({})).settings;
    const own = resolveSettings(reader({ monitorPerWindow: true })).settings;
    assert.equal(shared.monitorPerWindow, false);
    assert.deepEqual(diffSettings(shared, own), { restart: false, reconnect: true, sidecar: {} });
    assert.deepEqual(diffSettings(own, shared), { restart: false, reconnect: true, sidecar: {} });
    assert.ok(!('monitorPerWindow' in sidecarSettings(own, [])), 'the monitor never sees it');
    const { settings, problems } = resolveSettings(reader({ monitorPerWindow: 'yes' }));
    assert.equal(settings.monitorPerWindow, false);
    assert.deepEqual(problems, ['crashGuard.monitorPerWindow: "yes" is not true/false; using false']);
  });
  it('sends only keys the sidecar knows', () => {
    const keys = Object.keys(sidecarSettings(DEFAULTS, []));
    assert.deepEqual(keys.sort(), [...SIDECAR_KEYS, 'runsDirectories'].sort());
    assert.ok(!keys.includes('pythonPath') && !keys.includes('showNotifications'));
  });
});
