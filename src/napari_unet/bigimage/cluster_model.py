"""The model on a dask cluster: installed once on every worker by a worker plugin.

Scattering the model with ``broadcast=True`` does not keep it there: the scheduler's
active memory manager drops replicas that no task waits for yet, and a worker that
then runs a chunk fetches the weights again and rebuilds the network (seen on a
loaded 2-core machine). A worker plugin stays on each worker, and reaches workers
that join later, until the run removes it.
"""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin, get_worker

from ..errors import NapariUnetError
from .worker import SharedModel

__all__ = ["ClusterModel", "ModelPlugin"]


class ModelPlugin(WorkerPlugin):
    """Holds one :class:`SharedModel` on a worker (unpickled once there) for a run."""

    def __init__(self, shared: SharedModel) -> None:
        self.shared = shared


class ClusterModel:
    """What each task carries: the plugin's name; the model is looked up on its worker."""

    def __init__(self, name: str) -> None:
        self.name = name

    def get(self, device: Any) -> tuple[Any, Any]:
        """The network on ``device`` on this worker (see :meth:`SharedModel.get`)."""
        plugin = get_worker().plugins.get(self.name)
        if not isinstance(plugin, ModelPlugin):
            raise NapariUnetError(
                "This dask worker has no copy of the model (its run was closed); run it again."
            )
        return plugin.shared.get(device)
