"""The launch tests run the extension's own modules (launch_helpers.launch_argv)."""

from launch_helpers import launch_argv

__all__ = ["launch_argv"]
