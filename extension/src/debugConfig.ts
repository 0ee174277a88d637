// F5 "Safe Training (Low Memory)": the debug configuration written into a folder's launch.json, and what it becomes
// when F5 starts it. Pure: no 'vscode' import (launch.ts registers the provider).
//
// launch.json keeps the readable `module: crashguard`; at F5 the configuration is resolved to the training
// environment's `crashguard` console script as debugpy's `program`, with that environment's interpreter and the
// pythonArgs of isolation.ts (-I where crashguard is installed in the environment itself): a `module` would be
// found from the working folder first (debugpy releases before the fix of microsoft/debugpy#1916 put the working
// folder on sys.path whatever pythonArgs say).
import { SAFE_TRAINING_DEBUG_ARGS } from './cli';
import { cleanPythonPath, MODULE, OLD_MODULE, type CrashguardLaunch } from './isolation';

export const SAFE_TRAINING_NAME = 'Safe Training (Low Memory)';

/** The shape of a debug configuration this module reads and writes (vscode.DebugConfiguration's). */
export interface DebugConfig {
  type: string;
  name: string;
  request: string;
  [key: string]: unknown;
}

export function safeTrainingConfiguration(): DebugConfig {
  return {
    name: SAFE_TRAINING_NAME,
    type: 'debugpy',
    request: 'launch',
    module: MODULE,
    args: [...SAFE_TRAINING_DEBUG_ARGS],
    cwd: '${workspaceFolder}',
    console: 'integratedTerminal',
    justMyCode: true,
  };
}

/** Whether F5 of `config` starts Crash Guard (the module, or its name before 0.1.0). */
export function startsCrashGuard(config: DebugConfig): boolean {
  return config.module === MODULE || config.module === OLD_MODULE;
}

export type Resolved = { ok: true; config: DebugConfig } | { ok: false; why: string };

/**
 * `config` (a `module: crashguard` one) as F5 runs it: the console script of `launch` as `program`, its
 * interpreter and pythonArgs, PYTHONPATH without the working folder; `train` registers in the folder's runs
 * directory (`runsDirSetting`, as written, relative to the folder) unless it names one.
 */
export function resolveSafeTraining(config: DebugConfig, launch: CrashguardLaunch, runsDirSetting: string,
  defaultRunsDir: string, env: NodeJS.ProcessEnv): Resolved {
  if (!launch.debug) {
    return { ok: false, why: `${launch.python} has crashguard but no crashguard console script to debug; reinstall ` +
      'it there (pip install --force-reinstall crashguard)' };
  }
  const rest: DebugConfig = { ...config };
  delete rest.module;
  const args = Array.isArray(config.args) ? (config.args as unknown[]).map(String) : [];
  if (args[0] === 'train' && !args.includes('--runs-dir') && runsDirSetting !== defaultRunsDir) {
    args.push('--runs-dir', runsDirSetting);
  }
  const userArgs = Array.isArray(config.pythonArgs) ? (config.pythonArgs as unknown[]).map(String) : [];
  const userEnv = typeof config.env === 'object' && config.env !== null ? config.env as Record<string, string> : {};
  const pythonPath = cleanPythonPath(userEnv.PYTHONPATH ?? env.PYTHONPATH);
  return { ok: true, config: {
    ...rest,
    program: launch.debug.program,
    args,
    python: launch.python,
    pythonArgs: [...launch.debug.pythonArgs, ...userArgs.filter((a) => !launch.debug?.pythonArgs.includes(a))],
    env: { ...userEnv, ...(pythonPath === undefined ? {} : { PYTHONPATH: pythonPath }) },
  } };
}
