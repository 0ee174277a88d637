import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import {
  chooseSidecarInterpreter, configuredInterpreters, expandPath, findInterpreters, MONITOR_CHOICE_SOURCE, parseProbe,
  probePython, resolveTrainingInterpreter, searchFolders, trainingState, usableForMonitor, versionAtLeast, type Probe,
  type PythonInfo,
} from '../../../extension/src/python';
import { noDataGaugeText } from '../../../extension/src/format';

const ROOT = path.resolve(__dirname, '../../../../..');
const VENV_PYTHON = path.join(ROOT, '.venv', 'bin', 'python');
const PROBE = path.join(ROOT, 'bundled', 'tool', 'probe.py');
const none = () => Promise.resolve(undefined);

function info(version: string, extra: Partial<PythonInfo> = {}, found: Partial<PythonInfo['found']> = {}): PythonInfo {
  return { executable: `/usr/bin/python${version}`, version, prefix: '/usr', virtualEnv: false, crashguard: null,
    found: { crashguard: null, torch: null, monai: null, ...found }, crashguardScript: null, pip: true, ...extra };
}

describe('interpreter discovery', () => {
  it('lists our setting (with ${workspaceFolder}), then $CRASH_GUARD_PYTHON, then the active Python extension', async () => {
    const got = await configuredInterpreters({ setting: '${workspaceFolder}/.venv/bin/python', env: { CRASH_GUARD_PYTHON: '/env/python' },
      workspaceFolder: '/ws', pythonExtension: () => Promise.resolve('/ext/python') });
    assert.deepEqual(got, [
      { path: '/ws/.venv/bin/python', source: 'setting crashGuard.pythonPath' },
      { path: '/env/python', source: 'environment CRASH_GUARD_PYTHON' },
      { path: '/ext/python', source: 'Python extension' },
    ]);
  });
  it('trains with the first configured interpreter, else python3 from PATH', async () => {
    assert.deepEqual(await resolveTrainingInterpreter({ setting: ' ', env: {}, workspaceFolder: '/ws',
      pythonExtension: () => Promise.resolve('/ext/python') }), { path: '/ext/python', source: 'Python extension' });
    assert.deepEqual(await resolveTrainingInterpreter({ setting: '', env: {}, workspaceFolder: undefined, pythonExtension: none }),
      { path: 'python3', source: 'PATH' });
  });
  it('a failing Python extension is skipped', async () => {
    const got = await configuredInterpreters({ setting: '', env: {}, workspaceFolder: '/ws',
      pythonExtension: () => Promise.reject(new Error('activation failed')) });
    assert.deepEqual(got, []);
  });
  it('expands paths', () => {
    assert.equal(expandPath('.venv/bin/python', '/ws'), '/ws/.venv/bin/python');
    assert.equal(expandPath('python3', '/ws'), 'python3');
    assert.equal(expandPath('~/py/bin/python', '/ws', '/home/u'), '/home/u/py/bin/python');
  });
});

describe('the monitor\'s interpreter', () => {
  it('is the first Python >= 3.10, passing over a missing or older configured one to PATH', async () => {
    const probes: Record<string, Probe> = {
      '/old/python': { ok: true, info: info('3.9.18') },
      python3: { ok: true, info: info('3.11.2') },
    };
    const tried: string[] = [];
    const choice = await chooseSidecarInterpreter(
      { setting: '/missing/python', env: { CRASH_GUARD_PYTHON: '/old/python' }, workspaceFolder: '/ws', pythonExtension: none },
      (p) => {
        tried.push(p);
        return Promise.resolve(probes[p] ?? { ok: false, reason: `interpreter not found: ${p}` });
      });
    assert.ok('interpreter' in choice);
    assert.deepEqual(choice.interpreter, { path: 'python3', source: 'PATH' });
    assert.deepEqual(tried, ['/missing/python', '/old/python', 'python3']);
    assert.equal(choice.passedOver.length, 2);
    assert.match(choice.passedOver[1] ?? '', /3\.9\.18 is older than 3\.10/);
  });
  it('says so when there is none', async () => {
    const choice = await chooseSidecarInterpreter({ setting: '', env: {}, workspaceFolder: undefined, pythonExtension: none },
      () => Promise.resolve({ ok: true, info: info('3.8.1') }));
    assert.ok(!('interpreter' in choice));
  });
  it('compares versions', () => {
    assert.ok(versionAtLeast('3.10.0', [3, 10]) && versionAtLeast('3.13.1', [3, 10]) && versionAtLeast('4.0', [3, 10]));
    assert.ok(!versionAtLeast('3.9.18', [3, 10]) && !versionAtLeast('2.7.18', [3, 10]));
  });
});

describe('the training environment', () => {
  const py = { path: '/ws/.venv/bin/python', source: 'setting crashGuard.pythonPath' } as const;
  it('is ready with crashguard, torch and MONAI', () => {
    const all = { crashguard: 'isolated', torch: 'isolated', monai: 'userSite' } as const;
    assert.equal(trainingState(py, { ok: true, info: info('3.11.7', { crashguard: '0.1.0' }, all) }).kind, 'ready');
  });
  it('says what is missing, or why the interpreter is unusable', () => {
    const missing = trainingState(py, { ok: true, info: info('3.11.7', {}, { torch: 'pythonPath' }) });
    assert.deepEqual(missing.kind === 'missing' && missing.missing, ['crashguard', 'monai']);
    assert.equal(trainingState(py, { ok: false, reason: 'interpreter not found' }).kind, 'unusable');
  });
  it('rejects what is not the probe\'s JSON', () => {
    assert.equal(parseProbe('hello'), undefined);
    assert.equal(parseProbe('{"executable": "x"}'), undefined);
    assert.deepEqual(parseProbe(`noise\n${JSON.stringify(info('3.12.1'))}\n`), info('3.12.1'));
    const where = (found: unknown) => parseProbe(JSON.stringify({ ...info('3.12.1'), found }));
    assert.equal(where({ crashguard: 'cwd', torch: null, monai: null }), undefined);
    assert.equal(where({ crashguard: null, torch: null }), undefined);
  });
});

describe('probePython (real interpreters, in a folder that plants crashguard)', () => {
  const planted = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cg-probe-'));
    fs.mkdirSync(path.join(dir, 'crashguard'));
    fs.writeFileSync(path.join(dir, 'crashguard', '__init__.py'),
      `open(${JSON.stringify(path.join(dir, 'MARKER'))}, "w").write("ran")\n`);
    return dir;
  };
  it('describes the project venv (the training backend is there) and runs nothing from the folder',
    { skip: !fs.existsSync(VENV_PYTHON) && 'no .venv' }, async () => {
      const dir = planted();
      const got = await probePython(VENV_PYTHON, PROBE, dir);
      assert.ok(got.ok);
      assert.ok(got.info.crashguard && got.info.virtualEnv);
      assert.deepEqual(got.info.found, { crashguard: 'isolated', torch: 'isolated', monai: 'isolated' });
      assert.equal(got.info.crashguardScript, path.join(ROOT, '.venv', 'bin', 'crashguard'));
      assert.ok(!fs.existsSync(path.join(dir, 'MARKER')));
    });
  it('describes a Python without the package', async () => {
    const dir = planted();
    const python = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
    const got = await probePython(python, PROBE, dir);
    assert.ok(got.ok);
    assert.equal(got.info.found.crashguard, null, 'crashguard found: the probe looked in the folder');
    assert.ok(!fs.existsSync(path.join(dir, 'MARKER')));
  });
  it('explains a missing interpreter', async () => {
    assert.deepEqual(await probePython('/nonexistent/python', PROBE, os.tmpdir()),
      { ok: false, reason: 'interpreter not found: /nonexistent/python' });
  });
});

/** A Python 3.9 for the monitor: pyenv's when this machine has one, else a script that answers the probe as 3.9. */
function python39(dir: string): string {
  const pyenv = path.join(os.homedir(), '.pyenv', 'versions');
  const real = fs.existsSync(pyenv) ? fs.readdirSync(pyenv).filter((v) => v.startsWith('3.9.')).map((v) => path.join(pyenv, v, 'bin', 'python3.9'))
    .find((p) => fs.existsSync(p)) : undefined;
  if (real) return real;
  const fake = path.join(dir, 'python3.9');
  fs.writeFileSync(fake, `#!/bin/sh\necho '${JSON.stringify(info('3.9.18', { executable: fake }))}'\n`, { mode: 0o755 });
  return fake;
}

describe('a Python 3.9 configured for the monitor (issue 22)', () => {
  it('is passed over with its version said, and with no other Python the gauge reads "needs Python 3.10+"', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cg-py39-'));
    const old = python39(dir);
    const tried: string[] = [];
    // PATH holds only that 3.9 (as python3): nothing >= 3.10 anywhere the monitor looks.
    const choice = await chooseSidecarInterpreter({ setting: old, env: {}, workspaceFolder: dir, pythonExtension: none },
      (p) => {
        tried.push(p);
        if (p === old || p === 'python3') return probePython(old, PROBE, dir);
        return Promise.resolve({ ok: false, reason: `interpreter not found: ${p}` });
      });
    assert.ok(!('interpreter' in choice));
    assert.match(choice.passedOver[0] ?? '', /\(setting crashGuard\.pythonPath\): Python 3\.9\.\d+ is older than 3\.10/);
    assert.equal(tried[0], old);
    assert.match(choice.passedOver[1] ?? '', /^python3 \(PATH\): Python 3\.9\.\d+ is older than 3\.10/);
    assert.equal(noDataGaugeText('noPython'), '$(warning) RAM: needs Python 3.10+');
  });
  it('the user\'s pick for the monitor is tried first, then the configured ones', async () => {
    const tried: string[] = [];
    const choice = await chooseSidecarInterpreter(
      { setting: '/old/python', env: {}, workspaceFolder: '/ws', pythonExtension: none, monitorChoice: '/picked/python3.12' },
      (p) => {
        tried.push(p);
        return Promise.resolve({ ok: true, info: info(p === '/old/python' ? '3.9.1' : '3.12.1') });
      });
    assert.ok('interpreter' in choice);
    assert.deepEqual(choice.interpreter, { path: '/picked/python3.12', source: MONITOR_CHOICE_SOURCE });
    assert.deepEqual(tried, ['/picked/python3.12']);
  });
});

describe('interpreters on this machine, for "Select Python for the Memory Monitor"', () => {
  it('looks on PATH, in system folders, pyenv, conda and uv', () => {
    const folders = searchFolders({ env: { PATH: '/opt/x/bin:relative/bin' }, home: '/home/u', extra: [] });
    for (const f of ['/opt/x/bin', '/usr/bin', '/usr/local/bin', '/home/u/.pyenv/versions/*/bin', '/home/u/miniconda3/envs/*/bin',
      '/home/u/.local/share/uv/python/*/bin', '/opt/conda/bin']) assert.ok(folders.includes(f), f);
    assert.ok(!folders.includes('relative/bin'), 'a relative PATH entry names the working folder: never searched');
  });
  it('finds executables once each (a symlink to one already found is the same interpreter), globs expanded', () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'cg-home-'));
    const bin = path.join(home, '.pyenv', 'versions', '3.12.1', 'bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, 'python3.12'), '#!/bin/sh\n', { mode: 0o755 });
    fs.symlinkSync('python3.12', path.join(bin, 'python3'));
    fs.writeFileSync(path.join(bin, 'python'), 'not executable', { mode: 0o644 });
    const found = findInterpreters({ env: { PATH: '' }, home, extra: ['/nowhere/python'] });
    const mine = found.filter((f) => f.startsWith(home));
    assert.deepEqual(mine, [path.join(bin, 'python3.12')]);
  });
  it('offers only Python >= 3.10, newest first, and says why the others are not offered', () => {
    const { usable, passedOver } = usableForMonitor([
      { path: '/a', probe: { ok: true, info: info('3.10.13') } },
      { path: '/b', probe: { ok: true, info: info('3.9.18') } },
      { path: '/c', probe: { ok: true, info: info('3.13.0') } },
      { path: '/d', probe: { ok: false, reason: 'interpreter not found: /d' } },
      { path: '/e', probe: { ok: true, info: info('3.10.2') } },
    ]);
    assert.deepEqual(usable.map((u) => u.path), ['/c', '/a', '/e']);
    assert.deepEqual(passedOver, ['/b: Python 3.9.18 is older than 3.10', '/d: interpreter not found: /d']);
  });
});
