// The e2e's stand-in for the Python extension (ms-python.python): inactive until its command runs, like the real
// one until a Python file opens; then its exports have the published API's shape (@vscode/python-extension) with
// $FAKE_PYTHON_INTERPRETER as the active environment.
const vscode = require('vscode');

exports.activate = function activate(context) {
  const interpreter = process.env.FAKE_PYTHON_INTERPRETER || '';
  const changed = new vscode.EventEmitter();
  context.subscriptions.push(vscode.commands.registerCommand('fakePython.activate', () => undefined), changed);
  const env = { id: interpreter, path: interpreter };
  const resolved = { ...env, executable: { uri: vscode.Uri.file(interpreter), bitness: '64-bit', sysPrefix: '' },
    environment: undefined, version: undefined, tools: [] };
  return {
    ready: Promise.resolve(),
    environments: {
      getActiveEnvironmentPath: () => env,
      resolveEnvironment: () => Promise.resolve(resolved),
      onDidChangeActiveEnvironmentPath: changed.event,
      known: [resolved],
    },
  };
};
