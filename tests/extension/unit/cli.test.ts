import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  cleanupDefinition, displayCommand, folderTaskDefinitions, resumeDefinition, runsDirOf, taskArgs,
  trainDefinition,
} from '../../../extension/src/cli';
import { probeArgs, sidecarArgs } from '../../../extension/src/python';
import { run } from './fixtures';

describe('CLI argv', () => {
  it('starts the bundled sidecar isolated from the workspace and its site hooks (-I -S)', () => {
    assert.deepEqual(sidecarArgs('/ext/bundled/tool/sidecar.py'), ['-I', '-S', '/ext/bundled/tool/sidecar.py']);
    assert.deepEqual(sidecarArgs('/repo/bundled/tool/sidecar.py', true), ['-I', '-S', '/repo/bundled/tool/sidecar.py', '--development']);
    assert.deepEqual(probeArgs('/ext/bundled/tool/probe.py'), ['-I', '-S', '/ext/bundled/tool/probe.py']);
  });
  it('builds the crashguard arguments of each task (the isolated start comes first: isolation.ts)', () => {
    assert.deepEqual(taskArgs({ type: 'crashGuard', command: 'monitor' }), ['monitor']);
    assert.deepEqual(taskArgs({ type: 'crashGuard', command: 'monitor', interval: 2 }), ['monitor', '--interval', '2']);
    assert.deepEqual(taskArgs({ type: 'crashGuard', command: 'cleanup' }), ['cleanup']);
    assert.deepEqual(taskArgs(cleanupDefinition('/ws/runs')), ['cleanup', '--runs-dir', '/ws/runs']);
    assert.throws(() => taskArgs({ type: 'crashGuard', command: 'resume', runDir: '/ws/runs/x' }), /recorded/);
    assert.deepEqual(taskArgs({ type: 'crashGuard', command: 'train' }), ['train', '--config', 'config/safe_training.json']);
    assert.deepEqual(taskArgs(trainDefinition('/ws/runs')),
      ['train', '--config', 'config/safe_training.json', '--runs-dir', '/ws/runs']);
    assert.deepEqual(folderTaskDefinitions('/ws/runs').map((d) => d.command), ['monitor', 'cleanup', 'train']);
  });
  it('resumes a crashed run from its last checkpoint', () => {
    const r = run({ state: 'crashed', alive: false });
    const def = resumeDefinition(r, runsDirOf(r));
    assert.ok(def);
    assert.deepEqual(taskArgs(def), ['train', '--config', '/ws/config/safe_training.json',
      '--run-name', 'brats-safe', '--resume', 'auto', '--runs-dir', '/ws/runs']);
    assert.equal(resumeDefinition(run({ config: null })), undefined);
  });
  it('finds the runs directory of a run', () => {
    assert.equal(runsDirOf(run({ dir: '/a/b/runs/x/' })), '/a/b/runs');
    assert.equal(runsDirOf(run({ dir: 'x' })), undefined);
  });
  it('quotes for display only', () => {
    assert.equal(displayCommand('/p y/python', ['-c', "print('x')"]), `'/p y/python' -c 'print('\\''x'\\'')'`);
  });
});
