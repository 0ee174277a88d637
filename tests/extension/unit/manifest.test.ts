// package.json (the manifest) and the code agree: commands, settings and their defaults, task definitions, the F5
// snippet, and .vscode/launch.json / tasks.json.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { SAFE_TRAINING_CONFIG, SAFE_TRAINING_DEBUG_ARGS, taskArgs } from '../../../extension/src/cli';
import { DEFAULTS } from '../../../extension/src/settings';

const ROOT = path.resolve(__dirname, '../../../../..');

interface Manifest {
  main: string;
  extensionKind: string[];
  engines: { vscode: string };
  contributes: {
    commands: { command: string; title: string; category: string }[];
    configuration: { properties: Record<string, { default: unknown }> };
    taskDefinitions: { type: string; properties: { command: { enum: string[] } } }[];
    debuggers: { type: string; configurationSnippets: { body: Record<string, unknown> }[] }[];
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
      'Stop Training (checkpoint)', 'Resume Last Run', 'Show Logs', 'Restart Sidecar', 'Select Python', 'Show Memory Report']) {
      assert.ok(titles.includes(t), t);
    }
  });
  it('declares every setting with the default settings.ts uses', () => {
    const props = manifest.contributes.configuration.properties;
    assert.deepEqual(Object.keys(props).sort(), Object.keys(DEFAULTS).map((k) => `crashGuard.${k}`).sort());
    for (const [key, value] of Object.entries(DEFAULTS)) {
      assert.deepEqual(props[`crashGuard.${key}`]?.default, value, key);
    }
  });
  it('defines the crashGuard task type for the monitor, the cleanup and training', () => {
    const def = manifest.contributes.taskDefinitions.find((d) => d.type === 'crashGuard');
    assert.deepEqual(def?.properties.command.enum, ['monitor', 'cleanup', 'train']);
  });
  it('offers the F5 snippet that .vscode/launch.json carries', () => {
    const snippet = manifest.contributes.debuggers.find((d) => d.type === 'debugpy')?.configurationSnippets[0]?.body;
    assert.ok(snippet);
    assert.equal(snippet.name, 'Safe Training (Low Memory)');
    assert.equal(snippet.module, 'python_backend');
    assert.deepEqual(snippet.args, SAFE_TRAINING_DEBUG_ARGS);
    const launch = readJsonc(path.join(ROOT, '.vscode', 'launch.json')) as { configurations: Record<string, unknown>[] };
    const f5 = launch.configurations.find((c) => c.name === 'Safe Training (Low Memory)');
    assert.ok(f5);
    assert.equal(f5.type, 'debugpy');
    assert.equal(f5.module, 'python_backend');
    assert.deepEqual(f5.args, snippet.args);
    assert.ok(fs.existsSync(path.join(ROOT, SAFE_TRAINING_CONFIG)), `${SAFE_TRAINING_CONFIG} exists`);
  });
  it('.vscode/tasks.json carries the monitor and the cleanup with the provider\'s command lines', () => {
    const tasks = readJsonc(path.join(ROOT, '.vscode', 'tasks.json')) as { tasks: { label: string; args?: string[] }[] };
    const byLabel = new Map(tasks.tasks.map((t) => [t.label, t.args]));
    assert.deepEqual(byLabel.get('Start Memory Monitor'), taskArgs({ type: 'crashGuard', command: 'monitor' }));
    assert.deepEqual(byLabel.get('Emergency Cleanup'), taskArgs({ type: 'crashGuard', command: 'cleanup' }));
    assert.deepEqual(byLabel.get('Safe Training (Low Memory)'), taskArgs({ type: 'crashGuard', command: 'train' }));
  });
  it('keeps heavy folders away from the watcher and search (.vscode/settings.json)', () => {
    const settings = readJsonc(path.join(ROOT, '.vscode', 'settings.json')) as Record<string, Record<string, boolean>>;
    for (const key of ['files.watcherExclude', 'search.exclude', 'files.exclude']) {
      const globs = Object.keys(settings[key] ?? {}).join(' ');
      for (const part of ['data', 'runs', 'checkpoints', '*.nii.gz', '.venv', '.e2e']) assert.ok(globs.includes(part), `${key}: ${part}`);
    }
  });
});
