// Prints, as JSON, every command the extension builds to start crashguard in a training environment, from the
// extension's own modules (no 'vscode' needed): tests/python/launch/test_extension_launches.py bundles this file
// with esbuild, feeds it the real probe of an interpreter, and runs each command in a folder that plants packages.
//
//   node launch_argv.js '{"probe": <probe.py output>, "runsDir": "/abs/runs", "config": "/abs/config.json",
//                         "env": {"PYTHONPATH": "..."}}'
import {
  cleanupDefinition, folderTaskDefinitions, resumeDefinition, runsDirOf, taskArgs, trainDefinition,
} from '../../extension/src/cli';
import { resumePlan } from '../../extension/src/crashes';
import { resolveSafeTraining, safeTrainingConfiguration } from '../../extension/src/debugConfig';
import { crashguardLaunch, crashguardProcess, type CrashguardLaunch } from '../../extension/src/isolation';
import { parseProbe, probeArgs, sidecarArgs } from '../../extension/src/python';
import type { RunInfo } from '../../extension/src/protocol';

interface Input {
  probe: unknown;
  runsDir: string;
  config: string;
  env: Record<string, string>;
}

/** `{"own": {"probe": <probe.py>, "launcher": <sidecar.py>}}`: the argv (after the interpreter) of what the
 *  extension runs from its own files — the interpreter probe and the memory monitor (issue 21: no site hooks). */
interface OwnInput {
  own: { probe: string; launcher: string };
}

interface Command {
  argv: string[];
  env: Record<string, string>;
}

const raw = JSON.parse(process.argv[2] ?? '{}') as Input | OwnInput;
if ('own' in raw) {
  process.stdout.write(`${JSON.stringify({ probe: probeArgs(raw.own.probe), monitor: sidecarArgs(raw.own.launcher),
    monitorDevelopment: sidecarArgs(raw.own.launcher, true) })}\n`);
  process.exit(0);
}
const input = raw;
const info = parseProbe(JSON.stringify(input.probe));
if (!info) throw new Error('not the probe\'s output');
const choice = crashguardLaunch(info, input.env);
if (!choice.ok) throw new Error(choice.why);
const launch: CrashguardLaunch = choice.launch;
const command = (args: readonly string[]): Command => {
  const child = crashguardProcess(launch, args);
  return { argv: [child.command, ...child.args], env: child.env };
};

const out: Record<string, Command | Record<string, unknown>> = {};
for (const def of folderTaskDefinitions(input.runsDir)) out[`task ${def.command}`] = command(taskArgs(def));
out['Emergency Cleanup without a monitor'] = command(taskArgs(cleanupDefinition(input.runsDir)));
out['Start Safe Training'] = command(taskArgs(trainDefinition(input.runsDir)));

const crashed: RunInfo = {
  name: 'planted', dir: `${input.runsDir}/planted`, pid: 1, rank: 0, worldSize: 1, state: 'crashed', alive: false,
  step: 1, epoch: 0, microBatch: 1, accumulation: 1, loss: null, peakRss: null, treeRss: null, vram: null,
  lastEvent: null, exitCause: null, config: input.config, checkpoint: null, started: 1, updated: 1, stepSeconds: null,
  stalledSeconds: null, resumeCommand: null, oomScoreAdj: null, memory: null, checkpointStep: null, checkpointTime: null,
  snapshotBytes: null, crashProof: 'witnessed', lockHolder: null,
};
const folderOf = () => undefined;
const trainPlan = resumePlan(crashed, folderOf);
if (trainPlan.kind !== 'train') throw new Error(`expected a train plan, got ${trainPlan.kind}`);
out['Resume (no recorded command)'] = command(taskArgs(trainPlan.definition));
const definition = resumeDefinition(crashed, runsDirOf(crashed));
if (!definition) throw new Error('no resume definition');
const recordedArgs = taskArgs(definition);
for (const module of ['python_backend', 'crashguard']) {
  const plan = resumePlan({ ...crashed, resumeCommand: { argv: [info.executable, '-m', module, ...recordedArgs], cwd: '/' } }, folderOf);
  if (plan.kind !== 'relaunch') throw new Error(`expected a relaunch plan, got ${plan.kind}`);
  out[`Resume (recorded -m ${module})`] = command(plan.args);
}

const f5 = resolveSafeTraining(safeTrainingConfiguration(), launch, 'runs', 'runs', input.env);
if (!f5.ok) throw new Error(f5.why);
out.F5 = f5.config;
process.stdout.write(`${JSON.stringify(out)}\n`);
