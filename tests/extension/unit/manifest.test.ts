// package.json (the manifest) and the code agree: commands, settings and their defaults, task definitions, the F5
// snippet, and .vscode/launch.json / tasks.json.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import {
  SAFE_TRAINING_CONFIG, SAFE_TRAINING_DEBUG_ARGS, taskArgs, TRAINING_CONFIG_GLOB as CONFIG_GLOB, type CrashGuardTaskDefinition,
} from '../../../extension/src/cli';
import { GPU_STATUS_BAR_MODES } from '../../../extension/src/gauges';
import { CRITICAL_ACTIONS } from '../../../extension/src/protocol';
import { DEFAULTS, RANGES, RESTRICTED_KEYS } from '../../../extension/src/settings';

const ROOT = path.resolve(__dirname, '../../../../..');

interface Manifest {
  main: string;
  publisher: string;
  icon: string;
  license: string;
  repository: { type: string; url: string };
  categories: string[];
  keywords: string[];
  extensionKind: string[];
  engines: { vscode: string };
  scripts: Record<string, string>;
  capabilities: { untrustedWorkspaces: { supported: string | boolean; restrictedConfigurations: string[] } };
  contributes: {
    commands: { command: string; title: string; category: string }[];
    configuration: { properties: Record<string, { type?: string; default: unknown; scope?: string; minimum?: number; maximum?: number; enum?: string[] }> };
    taskDefinitions: { type: string; properties: { command: { enum: string[] } } }[];
    jsonValidation: { fileMatch: string[]; url: string }[];
    debuggers?: unknown[];
  };
}

const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Manifest;

/** JSON with comments (.vscode files): drops // comments outside strings. */
function readJsonc(file: string): unknown {
  const text = fs.readFileSync(file, 'utf8');
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] ?? '';
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i] ?? '';
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
      out += '\n';
    } else {
      out += c;
    }
  }
  return JSON.parse(out);
}

interface Declared {
  type?: string;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  enum?: readonly string[];
}

/** Where settings.ts differs from package.json's `contributes.configuration` (the one declaration). */
function settingsDrift(properties: Record<string, Declared | undefined>): string[] {
  const out: string[] = [];
  const declared = new Map(Object.entries(properties).map(([k, v]) => [k.replace(/^crashGuard\./, ''), v ?? {}]));
  for (const key of Object.keys(DEFAULTS)) if (!declared.has(key)) out.push(`${key}: in settings.ts, not declared`);
  for (const [key, d] of declared) {
    if (!(key in DEFAULTS)) {
      out.push(`${key}: declared in package.json, unknown to settings.ts`);
      continue;
    }
    const value = DEFAULTS[key as keyof typeof DEFAULTS];
    if (JSON.stringify(d.default) !== JSON.stringify(value)) out.push(`${key}: default ${String(d.default)}, settings.ts ${String(value)}`);
    const range = (RANGES as Record<string, { min: number; max: number; integer: boolean } | undefined>)[key];
    if (range) {
      const type = range.integer ? 'integer' : 'number';
      if (d.type !== type) out.push(`${key}: type ${String(d.type)}, settings.ts ${type}`);
      if (d.minimum !== range.min) out.push(`${key}: minimum ${String(d.minimum)}, settings.ts ${range.min}`);
      if (d.maximum !== range.max) out.push(`${key}: maximum ${String(d.maximum)}, settings.ts ${range.max}`);
    } else if (d.type !== typeof value || d.minimum !== undefined || d.maximum !== undefined) {
      out.push(`${key}: type ${String(d.type)}, settings.ts ${typeof value} without a range`);
    }
    const choices = key === 'criticalAction' ? CRITICAL_ACTIONS : key === 'gpuStatusBar' ? GPU_STATUS_BAR_MODES : undefined;
    if (String(d.enum) !== String(choices)) out.push(`${key}: enum ${String(d.enum)}, settings.ts ${String(choices)}`);
  }
  return out;
}

describe('manifest', () => {
  it('is a workspace extension bundled into dist/', () => {
    assert.deepEqual(manifest.extensionKind, ['workspace']);
    assert.equal(manifest.main, './dist/extension.js');
    assert.equal(manifest.engines.vscode, '^1.90.0');
  });
  it('contributes exactly the commands commands.ts registers, all in category Crash Guard', () => {
    const source = fs.readFileSync(path.join(ROOT, 'extension', 'src', 'commands.ts'), 'utf8');
    const registered = [...source.matchAll(/reg\('(crashGuard\.[A-Za-z]+)'/g)].map((m) => m[1]).sort();
    const contributed = manifest.contributes.commands.map((c) => c.command).sort();
    assert.deepEqual(contributed, registered);
    for (const c of manifest.contributes.commands) assert.equal(c.category, 'Crash Guard', c.command);
    const titles = manifest.contributes.commands.map((c) => c.title);
    for (const t of ['Emergency Cleanup', 'Start Memory Monitor', 'Stop Memory Monitor', 'Start Safe Training',
      'Stop Training (checkpoint)', 'Resume Last Run', 'Show Logs', 'Restart Memory Monitor', 'Select Python for Training',
      'Select Python for the Memory Monitor', 'Show Memory Report', 'Add Safe Training to this Folder',
      'Set Up Crash Guard Training…']) {
      assert.ok(titles.includes(t), t);
    }
    assert.equal(new Set(titles).size, titles.length, 'no two commands share a title');
  });
  it('says "memory monitor" to users, never "sidecar" (titles, descriptions, choices)', () => {
    const visible: string[] = [manifest.contributes.commands.map((c) => c.title).join('\n')];
    const raw = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      description: string; contributes: { configuration: { properties: Record<string, {
        markdownDescription?: string; description?: string; enumDescriptions?: string[] }> } };
      capabilities: { untrustedWorkspaces: { description: string } } };
    visible.push(raw.description, raw.capabilities.untrustedWorkspaces.description);
    for (const p of Object.values(raw.contributes.configuration.properties)) {
      visible.push(p.markdownDescription ?? '', p.description ?? '', (p.enumDescriptions ?? []).join('\n'));
    }
    for (const text of visible) assert.doesNotMatch(text, /sidecar/i, text);
  });
  it('is the one declaration of every setting: settings.ts has its defaults, ranges and choices', () => {
    assert.deepEqual(settingsDrift(manifest.contributes.configuration.properties), []);
  });
  it('notices any drift of a default, a range, an integer type, a choice or a key', () => {
    const props = manifest.contributes.configuration.properties;
    const drifted = (key: string, change: Record<string, unknown>) =>
      settingsDrift({ ...props, [`crashGuard.${key}`]: { ...props[`crashGuard.${key}`], ...change } });
    assert.deepEqual(drifted('ramWarningPercent', { default: 75 }), ['ramWarningPercent: default 75, settings.ts 80']);
    assert.deepEqual(drifted('sampleIntervalMs', { minimum: 100 }), ['sampleIntervalMs: minimum 100, settings.ts 200']);
    assert.deepEqual(drifted('topProcesses', { maximum: 50 }), ['topProcesses: maximum 50, settings.ts 20']);
    assert.deepEqual(drifted('hungAfterSeconds', { type: 'integer' }), ['hungAfterSeconds: type integer, settings.ts number']);
    assert.deepEqual(drifted('criticalAction', { enum: ['none', 'checkpointAndStop', 'kill'] }),
      ['criticalAction: enum none,checkpointAndStop,kill, settings.ts none,checkpointAndStop']);
    assert.deepEqual(settingsDrift({ ...props, 'crashGuard.newThing': { type: 'boolean', default: false } }),
      ['newThing: declared in package.json, unknown to settings.ts']);
  });
  it('defines the crashGuard task type for the monitor, the cleanup, training and resume', () => {
    const def = manifest.contributes.taskDefinitions.find((d) => d.type === 'crashGuard');
    assert.deepEqual(def?.properties.command.enum, ['monitor', 'cleanup', 'train', 'resume']);
  });
  it('ignores every setting that can make it stop, signal, write or run something in Restricted Mode', () => {
    const trust = manifest.capabilities.untrustedWorkspaces;
    assert.equal(trust.supported, 'limited');
    assert.deepEqual([...trust.restrictedConfigurations].sort(), RESTRICTED_KEYS.map((k) => `crashGuard.${k}`).sort());
    for (const key of ['pythonPath', 'autoCleanup', 'criticalAction', 'runsDirectory']) {
      assert.ok(trust.restrictedConfigurations.includes(`crashGuard.${key}`), key);
    }
    assert.equal(manifest.contributes.configuration.properties['crashGuard.runsDirectory']?.scope, 'resource');
  });
  it('leaks nothing into unrelated folders: no static F5 snippet, no training build task, a narrow schema', () => {
    assert.equal(manifest.contributes.debuggers, undefined, 'a configuration snippet would show in every launch.json');
    const tasks = fs.readFileSync(path.join(ROOT, 'extension', 'src', 'tasks.ts'), 'utf8');
    assert.doesNotMatch(tasks, /TaskGroup\.(Build|Test)/);
    const globs = manifest.contributes.jsonValidation.flatMap((j) => j.fileMatch);
    assert.deepEqual(globs, ['**/config/safe_training*.json', '**/*.crashguard.json']);
    assert.match(CONFIG_GLOB, /safe_training\*\.json/);
  });
  it('is ready for the marketplace: icon, repository, license, changelog, categories, a publisher', () => {
    assert.ok(fs.existsSync(path.join(ROOT, manifest.icon)), manifest.icon);
    assert.match(manifest.repository.url, /^https:\/\/.+\.git$/);
    assert.equal(manifest.license, 'Apache-2.0');
    assert.match(fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0/);
    assert.match(fs.readFileSync(path.join(ROOT, 'CHANGELOG.md'), 'utf8'), /^# Changelog/);
    assert.ok(manifest.categories.includes('Machine Learning') && manifest.keywords.length >= 5);
    assert.match(manifest.publisher, /^[a-z0-9][a-z0-9-]*$/);
    assert.match(manifest.scripts['vscode:prepublish'] ?? '', /typecheck.*lint.*esbuild/);
    assert.match(manifest.scripts.package ?? '', /--target .*check_vsix/);
  });
  it('.vscode/launch.json carries the F5 configuration the provider offers', () => {
    const launch = readJsonc(path.join(ROOT, '.vscode', 'launch.json')) as { configurations: Record<string, unknown>[] };
    const f5 = launch.configurations.find((c) => c.name === 'Safe Training (Low Memory)');
    assert.ok(f5);
    assert.equal(f5.type, 'debugpy');
    assert.equal(f5.module, 'crashguard');
    assert.deepEqual(f5.args, SAFE_TRAINING_DEBUG_ARGS);
    assert.ok(fs.existsSync(path.join(ROOT, SAFE_TRAINING_CONFIG)), `${SAFE_TRAINING_CONFIG} exists`);
  });
  it('.vscode/tasks.json carries the monitor and the cleanup with the provider\'s command lines', () => {
    const tasks = readJsonc(path.join(ROOT, '.vscode', 'tasks.json')) as { tasks: { label: string; args?: string[] }[] };
    const byLabel = new Map(tasks.tasks.map((t) => [t.label, t.args]));
    // The repository's .venv holds crashguard itself (editable): the provider's rule gives `-I -m crashguard`.
    const isolated = (def: CrashGuardTaskDefinition) => ['-I', '-m', 'crashguard', ...taskArgs(def)];
    assert.deepEqual(byLabel.get('Start Memory Monitor'), isolated({ type: 'crashGuard', command: 'monitor' }));
    assert.deepEqual(byLabel.get('Emergency Cleanup'), isolated({ type: 'crashGuard', command: 'cleanup' }));
    assert.deepEqual(byLabel.get('Safe Training (Low Memory)'), isolated({ type: 'crashGuard', command: 'train' }));
    assert.deepEqual(byLabel.get('Resume Last Run'), [...isolated({ type: 'crashGuard', command: 'train' }), '--resume', 'auto']);
  });
  it('keeps heavy folders away from the watcher and search (.vscode/settings.json)', () => {
    const settings = readJsonc(path.join(ROOT, '.vscode', 'settings.json')) as Record<string, Record<string, boolean>>;
    for (const key of ['files.watcherExclude', 'search.exclude', 'files.exclude']) {
      const globs = Object.keys(settings[key] ?? {}).join(' ');
      for (const part of ['data', 'runs', 'checkpoints', '*.nii.gz', '.venv', '.e2e']) assert.ok(globs.includes(part), `${key}: ${part}`);
    }
  });
});
