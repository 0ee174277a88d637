import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { checkBackend, expandPath, resolveInterpreter } from '../../../extension/src/python';

const ROOT = path.resolve(__dirname, '../../../../..');
const VENV_PYTHON = path.join(ROOT, '.venv', 'bin', 'python');

describe('interpreter discovery order', () => {
  const none = () => Promise.resolve(undefined);
  it('our setting wins, with ${workspaceFolder} expanded', async () => {
    const got = await resolveInterpreter({ setting: '${workspaceFolder}/.venv/bin/python', env: { CRASH_GUARD_PYTHON: '/env/python' },
      workspaceFolder: '/ws', pythonExtension: () => Promise.resolve('/ext/python') });
    assert.deepEqual(got, { path: '/ws/.venv/bin/python', source: 'setting crashGuard.pythonPath' });
  });
  it('then $CRASH_GUARD_PYTHON, then the Python extension, then python3', async () => {
    assert.equal((await resolveInterpreter({ setting: '', env: { CRASH_GUARD_PYTHON: '/env/python' }, workspaceFolder: '/ws',
      pythonExtension: () => Promise.resolve('/ext/python') })).source, 'environment CRASH_GUARD_PYTHON');
    assert.deepEqual(await resolveInterpreter({ setting: ' ', env: {}, workspaceFolder: '/ws',
      pythonExtension: () => Promise.resolve('/ext/python') }), { path: '/ext/python', source: 'Python extension' });
    assert.deepEqual(await resolveInterpreter({ setting: '', env: {}, workspaceFolder: undefined, pythonExtension: none }),
      { path: 'python3', source: 'default python3' });
  });
  it('a failing Python extension falls through to python3', async () => {
    const got = await resolveInterpreter({ setting: '', env: {}, workspaceFolder: '/ws',
      pythonExtension: () => Promise.reject(new Error('activation failed')) });
    assert.equal(got.source, 'default python3');
  });
  it('expands paths', () => {
    assert.equal(expandPath('.venv/bin/python', '/ws'), '/ws/.venv/bin/python');
    assert.equal(expandPath('python3', '/ws'), 'python3');
    assert.equal(expandPath('~/py/bin/python', '/ws', '/home/u'), '/home/u/py/bin/python');
  });
});

describe('checkBackend (real interpreters)', () => {
  it('accepts the venv that has python_backend', { skip: !fs.existsSync(VENV_PYTHON) && 'no .venv' }, async () => {
    assert.deepEqual(await checkBackend(VENV_PYTHON, ROOT), { ok: true });
  });
  it('explains a Python without python_backend', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'cg-'));
    const python = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
    const got = await checkBackend(python, cwd);
    assert.equal(got.ok, false);
    assert.match(got.reason ?? '', /No module named 'python_backend'/);
  });
  it('explains a missing interpreter', async () => {
    const got = await checkBackend('/nonexistent/python', undefined);
    assert.deepEqual(got, { ok: false, reason: 'interpreter not found: /nonexistent/python' });
  });
});
