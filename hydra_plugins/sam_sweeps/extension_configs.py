"""Config groups shipped by installed extension packages join Hydra's search path.

A package declares `[project.entry-points."sam_sweeps.conf"] mypkg = "mypkg.conf"`, a package
of YAML files laid out like conf/ (`model/mlp.yaml`, `schedule/cosine_warm.yaml`, ...). Hydra
finds this plugin in its `hydra_plugins` namespace and asks it for the search path of every
config it composes; it appends one `pkg://` source per entry point, after the project's own
conf/ (a built-in option keeps its name), and only when the project's conf/ is being composed.
"""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from runner.sweep.options import extension_config_packages, is_project_source


class ExtensionConfigs(SearchPathPlugin):
    """Appends `pkg://<package>` for every installed `sam_sweeps.conf` entry point."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not any(is_project_source(element.path) for element in search_path.get_path()):
            return
        present = {element.path for element in search_path.get_path()}
        for package in extension_config_packages():
            if f"pkg://{package}" not in present:
                search_path.append(provider="sam-sweeps-extension", path=f"pkg://{package}")
