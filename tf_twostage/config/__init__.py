"""The config tree (`base_config`), reading a run's saved config, and the checks of every key."""

from tf_twostage.config.base import base_config, load_run_config, placeholder_str

__all__ = ["base_config", "load_run_config", "placeholder_str"]
