"""The sidecar: the pygls server the VS Code extension starts, and everything only it uses (sampling, levels,
forecasts, the escalation ladder, the report's history, the wire protocol and its settings).

Nothing outside this package imports it, except the CLI commands that start or measure the sidecar and
`crashguard cleanup`, which prints protocol-shaped JSON. Never imports torch.
"""
