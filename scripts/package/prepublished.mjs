// Whether dist/extension.js is the production build of the sources as they are now, so packaging the .vsix of
// several targets (package_all.sh) type-checks, lints and bundles once. vscode:prepublish runs
// `node scripts/package/prepublished.mjs || (typecheck && lint && esbuild --production && … --stamp)`:
//   (no argument)  exit 0 when dist/.prepublished names the hash of every input and of dist/extension.js as they
//                  are now (any edit, a dev build, other dependencies: exit 1, and the full prepublish runs);
//   --stamp        record them after a successful prepublish.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const STAMP = path.join(ROOT, 'dist', '.prepublished');
const OUTPUT = path.join(ROOT, 'dist', 'extension.js');
// Everything typecheck, lint and esbuild read (node_modules through the lockfile).
const INPUTS = ['extension/src', 'package.json', 'package-lock.json', 'esbuild.mjs', 'tsconfig.json', 'tsconfig.test.json',
  'eslint.config.mjs', 'tests/extension', 'tests/e2e'];

function files(rel) {
  const full = path.join(ROOT, rel);
  if (!fs.existsSync(full)) return [];
  if (!fs.statSync(full).isDirectory()) return [rel];
  return fs.readdirSync(full).sort().flatMap((name) => files(path.join(rel, name)));
}

function digest() {
  const hash = createHash('sha256');
  for (const rel of INPUTS.flatMap(files)) hash.update(`${rel}\0`).update(fs.readFileSync(path.join(ROOT, rel))).update('\0');
  hash.update('dist/extension.js\0').update(fs.existsSync(OUTPUT) ? fs.readFileSync(OUTPUT) : '');
  return hash.digest('hex');
}

if (process.argv.includes('--stamp')) {
  fs.writeFileSync(STAMP, `${digest()}\n`);
} else {
  const recorded = fs.existsSync(STAMP) ? fs.readFileSync(STAMP, 'utf8').trim() : '';
  const current = digest();
  if (recorded !== current) process.exit(1);
  console.log('prepublish: dist/extension.js is the production build of these sources; not rebuilt');
}
