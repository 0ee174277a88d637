// Which monitor a window uses: the shared one unless crashGuard.monitorPerWindow is on or the starter says this
// platform cannot host one (exit 7); a refusal (exit 5) or a failed start is never a reason to go it alone. And
// against the real bundled launcher on a Python without SO_PEERCRED (as on macOS): the starter's answer leads here.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { ensureMonitor, MonitorUnavailable } from '../../../extension/src/monitorConnection';
import {
  chooseTransport, EXIT_NO_SHARED_MONITOR, EXIT_UNSAFE, knownOutcome, transportLogLine, transportNote,
  type StarterOutcome,
} from '../../../extension/src/monitorTransport';

const ROOT = path.resolve(__dirname, '../../../../..');
const PYTHON = process.env.CRASH_GUARD_TEST_PYTHON ?? path.join(ROOT, '.venv', 'bin', 'python');
const LAUNCHER = path.join(ROOT, 'bundled', 'tool', 'sidecar.py');

const failed = (code: number | undefined): StarterOutcome => ({ kind: 'failed', code });

describe('chooseTransport', () => {
  it('asks the starter first, and connects to the shared monitor it answers with', () => {
    assert.deepEqual(chooseTransport(false, { kind: 'notAsked' }), { kind: 'askStarter' });
    assert.deepEqual(chooseTransport(false, { kind: 'answered' }), { kind: 'shared' });
  });
  it('runs a monitor of its own where the starter says this platform has no shared one', () => {
    assert.deepEqual(chooseTransport(false, failed(EXIT_NO_SHARED_MONITOR)), { kind: 'perWindow', reason: 'platform' });
  });
  it('fails closed on a refusal, a monitor that did not come up, an old Python or a starter that never ran', () => {
    for (const code of [EXIT_UNSAFE, 6, 3, 4, 1, undefined]) {
      assert.deepEqual(chooseTransport(false, failed(code)), { kind: 'fail' }, `exit ${String(code)}`);
    }
  });
  it('with crashGuard.monitorPerWindow on, never asks the starter: its own monitor, whatever is known', () => {
    for (const outcome of [{ kind: 'notAsked' }, { kind: 'answered' }, failed(EXIT_NO_SHARED_MONITOR), failed(EXIT_UNSAFE)] as StarterOutcome[]) {
      assert.deepEqual(chooseTransport(true, outcome), { kind: 'perWindow', reason: 'setting' }, JSON.stringify(outcome));
    }
  });
  it('does not ask an interpreter again once it said "no shared monitor" (another one is asked)', () => {
    const said = new Set(['/usr/bin/python3']);
    assert.deepEqual(chooseTransport(false, knownOutcome('/usr/bin/python3', said)), { kind: 'perWindow', reason: 'platform' });
    assert.deepEqual(chooseTransport(false, knownOutcome('/opt/py/bin/python3.12', said)), { kind: 'askStarter' });
  });
});

describe('what the window says', () => {
  it('the tooltip says "this platform: one memory monitor per window", or names the setting; nothing when shared', () => {
    assert.match(transportNote('platform') ?? '', /this platform: one memory monitor per window/i);
    assert.match(transportNote('setting') ?? '', /one memory monitor per window.*crashGuard\.monitorPerWindow/i);
    assert.equal(transportNote(undefined), null);
    assert.match(transportLogLine('platform'), /this platform: one memory monitor per window/);
    assert.match(transportLogLine('setting'), /crashGuard\.monitorPerWindow is on/);
  });
  it('uses the exit codes of crashguard/sidecar/main.py', () => {
    const main = fs.readFileSync(path.join(ROOT, 'python_backend', 'crashguard', 'sidecar', 'main.py'), 'utf8');
    assert.equal(Number(/^EXIT_NO_SHARED_MONITOR = (\d+)/m.exec(main)?.[1]), EXIT_NO_SHARED_MONITOR);
    assert.equal(Number(/^EXIT_UNSAFE = (\d+)/m.exec(main)?.[1]), EXIT_UNSAFE);
  });
});

describe('the real launcher\'s starter', () => {
  // The extension's own argv (`-I launcher --development --ensure`), run after SO_PEERCRED is gone (or not).
  const START = 'import runpy, socket, sys\nif sys.argv[1] == "drop": del socket.SO_PEERCRED\n' +
    'sys.argv = sys.argv[2:]\nrunpy.run_path(sys.argv[0], run_name="__main__")';
  const dir = fs.mkdtempSync(path.join('/tmp', 'cg-unit-'));
  fs.chmodSync(dir, 0o700);
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const starter = async (drop: boolean): Promise<StarterOutcome> => {
    try {
      await ensureMonitor(PYTHON, ['-I', '-c', START, drop ? 'drop' : 'keep', LAUNCHER, '--development'], os.tmpdir(),
        { ...process.env, XDG_RUNTIME_DIR: dir });
      return { kind: 'answered' };
    } catch (error) {
      assert.ok(error instanceof MonitorUnavailable, String(error));
      return failed(error.exitCode);
    }
  };

  it('without SO_PEERCRED says so with exit 7, creating nothing: the window runs its own', async () => {
    const outcome = await starter(true);
    assert.deepEqual(outcome, failed(EXIT_NO_SHARED_MONITOR));
    assert.deepEqual(chooseTransport(false, outcome), { kind: 'perWindow', reason: 'platform' });
    assert.deepEqual(fs.readdirSync(dir), []);
  });
  it('with SO_PEERCRED, a planted socket is refused with exit 5: the window fails closed', async () => {
    const build = execFileSync(PYTHON, ['-I', '-c', `import sys; sys.path.insert(0, ${JSON.stringify(path.join(ROOT, 'python_backend'))}); ` +
      'from crashguard.sidecar.endpoint import build_id; print(build_id(True))']).toString().trim();
    fs.mkdirSync(path.join(dir, 'crashguard'), { mode: 0o700 });
    fs.writeFileSync(path.join(dir, 'planted'), '');
    fs.symlinkSync(path.join(dir, 'planted'), path.join(dir, 'crashguard', `monitor-${build}.sock`));
    const outcome = await starter(false);
    assert.deepEqual(outcome, failed(EXIT_UNSAFE));
    assert.deepEqual(chooseTransport(false, outcome), { kind: 'fail' });
  });
});
