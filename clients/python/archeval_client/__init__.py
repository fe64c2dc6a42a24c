"""archeval_client: a standard-library Python client for the archeval
service (training-free scores of neural-network architectures).

    from archeval_client import Client
    job = Client().submit({"type": "mlp_dag", "dag": "2_21_112"})
    print(job.wait()["convergence"])
"""

from .client import DEFAULT_SERVER, Client, Job
from .models import export_onnx
from .study import Study
from .errors import (ArchevalError, BodyTooLarge, Conflict, InvalidJSON,
                     InvalidRequest, JobCancelled, JobFailed,
                     MethodNotAllowed, NotFound, QueueFull, ServerError,
                     Unavailable, UnsupportedMediaType, WaitTimeout)

__version__ = "0.1.0"

__all__ = [
    "Client", "Job", "Study", "DEFAULT_SERVER", "export_onnx", "ArchevalError", "BodyTooLarge",
    "Conflict", "InvalidJSON", "InvalidRequest", "JobCancelled", "JobFailed",
    "MethodNotAllowed", "NotFound", "QueueFull", "ServerError", "Unavailable",
    "UnsupportedMediaType", "WaitTimeout",
]
