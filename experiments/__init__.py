"""The experiment families raysweep ships. Each is a plain function `fn(config, trial)`;
pyproject.toml registers them by name under the entry-point group `raysweep.experiments`."""
