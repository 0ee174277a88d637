// Every way the extension starts crashguard in the user's environment carries an isolation that keeps the folder
// it runs in off sys.path (issue 19): tasks, the palette's commands, F5 and Resume. The Python test
// tests/python/launch/test_extension_launches.py runs these very argvs in a folder that plants packages.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cleanupDefinition, folderTaskDefinitions, resumeDefinition, runsDirOf, taskArgs, trainDefinition } from '../../../extension/src/cli';
import { resumePlan } from '../../../extension/src/crashes';
import { resolveSafeTraining, safeTrainingConfiguration } from '../../../extension/src/debugConfig';
import {
  cleanPythonPath, crashguardLaunch, crashguardProcess, recordedLaunch, type CrashguardLaunch,
} from '../../../extension/src/isolation';
import type { PythonInfo } from '../../../extension/src/python';
import { run } from './fixtures';

function info(version: string, found: Partial<PythonInfo['found']>, script: string | null = '/env/bin/crashguard'): PythonInfo {
  return { executable: '/env/bin/python', version, prefix: '/env', virtualEnv: true, crashguard: '0.1.0',
    found: { crashguard: 'isolated', torch: 'isolated', monai: 'isolated', ...found }, crashguardScript: script, pip: true };
}

function launched(i: PythonInfo, env: NodeJS.ProcessEnv = {}): CrashguardLaunch {
  const choice = crashguardLaunch(i, env);
  if (!choice.ok) assert.fail(choice.why);
  return choice.launch;
}

/** Whether an argv can resolve crashguard from its working folder: `python -m` without -I/-P, or a bare `-c`. */
function resolvesFromFolder(argv: readonly string[]): boolean {
  const flags = argv.slice(1, argv.indexOf('-m') === -1 ? 1 : argv.indexOf('-m'));
  const module = argv.indexOf('-m') !== -1;
  return module && !flags.some((f) => f === '-I' || f === '-P');
}

const ISOLATED = launched(info('3.11.7', {}));
const USER_SITE = launched(info('3.12.1', { crashguard: 'userSite', torch: 'userSite', monai: 'userSite' },
  '/home/u/.local/bin/crashguard'), { PYTHONPATH: ':/opt/site:src' });
const OLD_USER_SITE = launched(info('3.10.13', { crashguard: 'userSite' }, '/home/u/.local/bin/crashguard'),
  { PYTHONPATH: '/opt/site' });

describe('how crashguard starts, per interpreter', () => {
  it('is `python -I -m crashguard` where the environment itself holds crashguard, torch and MONAI', () => {
    assert.deepEqual(ISOLATED.prefix, ['-I', '-m', 'crashguard']);
    assert.equal(ISOLATED.python, '/env/bin/python');
    assert.deepEqual(ISOLATED.env, {}); // -I ignores PYTHONPATH: nothing to clean
    assert.deepEqual(ISOLATED.debug, { program: '/env/bin/crashguard', pythonArgs: ['-I'] });
    // torch not installed yet: still -I (the monitor and the cleanup need no torch)
    assert.deepEqual(launched(info('3.10.13', { torch: null, monai: null })).prefix, ['-I', '-m', 'crashguard']);
  });
  it('is `python -P -m crashguard` on 3.11+ when a package comes from the user site-packages or PYTHONPATH', () => {
    assert.deepEqual(USER_SITE.prefix, ['-P', '-m', 'crashguard']);
    assert.deepEqual(USER_SITE.env, { PYTHONPATH: '/opt/site' }, 'the empty and relative entries name the working folder');
    assert.deepEqual(USER_SITE.debug, { program: '/home/u/.local/bin/crashguard', pythonArgs: ['-P'] });
    assert.match(USER_SITE.how, /user site-packages/);
    const torchOnPath = launched(info('3.11.7', { torch: 'pythonPath' }), {});
    assert.deepEqual(torchOnPath.prefix, ['-P', '-m', 'crashguard']);
    assert.deepEqual(torchOnPath.env, {});
  });
  it('is the console script on 3.10 (no -P), and refused without one', () => {
    assert.deepEqual(OLD_USER_SITE.prefix, ['/home/u/.local/bin/crashguard']);
    assert.deepEqual(OLD_USER_SITE.debug, { program: '/home/u/.local/bin/crashguard', pythonArgs: [] });
    assert.deepEqual(OLD_USER_SITE.env, {});
    const none = crashguardLaunch(info('3.10.13', { crashguard: 'pythonPath' }, null), {});
    assert.ok(!none.ok && /3\.11|virtual environment/.test(none.why));
    const missing = crashguardLaunch(info('3.11.7', { crashguard: null }), {});
    assert.ok(!missing.ok && /not installed/.test(missing.why));
  });
  it('keeps only absolute PYTHONPATH entries', () => {
    assert.equal(cleanPythonPath(undefined), undefined);
    assert.equal(cleanPythonPath('/a:/b'), undefined);
    assert.equal(cleanPythonPath('/a::.:src:/b'), '/a:/b');
    assert.equal(cleanPythonPath(':'), '');
  });
});

describe('every launch path carries the isolation', () => {
  const runsDir = '/ws/runs';
  for (const [name, launch] of [['-I', ISOLATED], ['-P', USER_SITE], ['console script', OLD_USER_SITE]] as const) {
    it(`tasks, Emergency Cleanup without a monitor, Start Safe Training, Resume (${name})`, () => {
      const defs = [...folderTaskDefinitions(runsDir), cleanupDefinition(runsDir), trainDefinition(runsDir)];
      const r = run({ state: 'crashed', alive: false });
      const resume = resumeDefinition(r, runsDirOf(r));
      assert.ok(resume);
      for (const def of [...defs, resume]) {
        const child = crashguardProcess(launch, taskArgs(def));
        const argv = [child.command, ...child.args];
        assert.ok(!resolvesFromFolder(argv), argv.join(' '));
        assert.deepEqual(argv.slice(0, 1 + launch.prefix.length), [launch.python, ...launch.prefix]);
        assert.deepEqual(child.env, launch.env);
      }
    });
    it(`F5 runs the console script with the rule's pythonArgs (${name})`, () => {
      const resolved = resolveSafeTraining(safeTrainingConfiguration(), launch, 'runs', 'runs', { PYTHONPATH: 'src' });
      if (!resolved.ok) assert.fail(resolved.why);
      const c = resolved.config;
      assert.equal(c.module, undefined, 'a module would be resolved from the folder by debugpy');
      assert.equal(c.program, launch.debug?.program);
      assert.equal(c.python, launch.python);
      assert.deepEqual(c.pythonArgs, launch.debug?.pythonArgs);
      assert.deepEqual(c.args, ['train', '--config', 'config/safe_training.json', '--no-supervise']);
      assert.deepEqual(c.env, { PYTHONPATH: '' }, 'a relative PYTHONPATH entry names the folder');
      assert.equal(c.cwd, '${workspaceFolder}');
    });
  }
  it('F5 keeps what the user set and registers where the monitor looks', () => {
    const resolved = resolveSafeTraining({ ...safeTrainingConfiguration(), module: 'python_backend', pythonArgs: ['-X', 'dev', '-I'],
      env: { PYTHONPATH: '/opt/x', OMP_NUM_THREADS: '4' } }, ISOLATED, 'out/runs', 'runs', {});
    if (!resolved.ok) assert.fail(resolved.why);
    assert.deepEqual(resolved.config.pythonArgs, ['-I', '-X', 'dev']);
    assert.deepEqual(resolved.config.env, { PYTHONPATH: '/opt/x', OMP_NUM_THREADS: '4' });
    assert.deepEqual(resolved.config.args, ['train', '--config', 'config/safe_training.json', '--no-supervise', '--runs-dir', 'out/runs']);
    assert.equal(resolved.config.program, '/env/bin/crashguard');
    const noScript = resolveSafeTraining(safeTrainingConfiguration(), { ...ISOLATED, debug: undefined }, 'runs', 'runs', {});
    assert.ok(!noScript.ok && /console script/.test(noScript.why));
  });
});

describe('recorded resume commands', () => {
  const folderOf = (p: string) => (p.startsWith('/ws/') ? '/ws' : undefined);
  const crashed = (argv: string[]) => run({ state: 'crashed', alive: false, resumeCommand: { argv, cwd: '/ws' } });
  it('tells isolated, unisolated (older Crash Guard) and torchrun starts apart', () => {
    assert.deepEqual(recordedLaunch(['/py', '-I', '-m', 'crashguard', 'train']), { kind: 'asIs' });
    assert.deepEqual(recordedLaunch(['/py', '-uP', '-m', 'crashguard', 'train']), { kind: 'asIs' });
    assert.deepEqual(recordedLaunch(['/py', '-I', '-c', 'import runpy', 'train']), { kind: 'asIs' });
    assert.deepEqual(recordedLaunch(['/py', 'train.py', '--resume']), { kind: 'asIs' }); // the user's own script
    assert.deepEqual(recordedLaunch(['/py', '-m', 'python_backend', 'train', '--resume', 'auto']),
      { kind: 'unisolated', interpreter: '/py', module: 'python_backend', args: ['train', '--resume', 'auto'] });
    assert.deepEqual(recordedLaunch(['/py', '-X', 'dev', '-m', 'crashguard', 'train']),
      { kind: 'unisolated', interpreter: '/py', module: 'crashguard', args: ['train'] });
    assert.deepEqual(recordedLaunch(['/py', '/env/bin/torchrun', '--nproc_per_node', '2', '-m', 'crashguard', 'train']),
      { kind: 'torchrun', module: 'crashguard' });
    assert.deepEqual(recordedLaunch(['/py', '-m', 'torch.distributed.run', '-m', 'python_backend', 'train']),
      { kind: 'torchrun', module: 'python_backend' });
    assert.deepEqual(recordedLaunch(['/py', '-I', '-m', 'torch.distributed.run', '--no-python', '/py', '-I', '-m', 'crashguard']),
      { kind: 'asIs' });
  });
  it('resumes a run of Crash Guard before 0.1.0 (-m python_backend) through crashguard, isolated', () => {
    const plan = resumePlan(crashed(['/old/python', '-m', 'python_backend', 'train', '--config', '/ws/c.json',
      '--resume', 'auto']), folderOf);
    assert.deepEqual(plan, { kind: 'relaunch', interpreter: '/old/python', cwd: '/ws', recordedModule: 'python_backend',
      args: ['train', '--config', '/ws/c.json', '--resume', 'auto'] });
    const child = crashguardProcess(ISOLATED, (plan as { args: string[] }).args);
    assert.deepEqual([child.command, ...child.args], ['/env/bin/python', '-I', '-m', 'crashguard', 'train', '--config',
      '/ws/c.json', '--resume', 'auto']);
  });
  it('refuses a torchrun -m crashguard record with what to do', () => {
    const plan = resumePlan(crashed(['/py', '/env/bin/torchrun', '-m', 'crashguard', 'train']), folderOf);
    assert.ok(plan.kind === 'none' && /--no-python <python> -I -m crashguard/.test(plan.why), JSON.stringify(plan));
  });
  it('runs an isolated record as recorded', () => {
    const argv = ['/env/bin/python', '-I', '-m', 'crashguard', 'train', '--resume', 'auto'];
    assert.deepEqual(resumePlan(crashed(argv), folderOf), { kind: 'recorded', argv, cwd: '/ws' });
  });
});
