"""export_onnx: a PyTorch module as the ONNX bytes archevald imports.

The module is exported by torch.onnx.export in training mode (so that
BatchNormalization stays a node, as the scores at initialisation assume,
instead of being folded into the convolutions), with constant folding off
and the opset the importer reads (14 by default), on an input of
batch_size samples of input_shape.  The module's own training flag and
its state (the batch norms' running statistics, which the tracing pass
moves) are put back afterwards, so exporting twice gives the same bytes.  torch is imported only here, and only when called:
without it, a RuntimeError says so.
"""

import io

DEFAULT_OPSET = 14


def _torch():
    try:
        import torch  # noqa: PLC0415 - optional dependency
        import torch.onnx  # noqa: F401, PLC0415
    except Exception as err:  # noqa: BLE001 - any import failure
        raise RuntimeError(
            "export_onnx needs PyTorch (torch with torch.onnx), which "
            "cannot be imported here: %s; install torch, or export the "
            "model to ONNX elsewhere and use Client.upload_model" % err
        ) from None
    return torch


def export_onnx(model, input_shape, batch_size=2, opset=None, path=None):
    """Exports model (a torch.nn.Module) to ONNX and returns the bytes
    (also written to path when given).  input_shape: one sample's shape,
    e.g. (3, 32, 32) or (784,).  The random example input is drawn from a
    private generator: the caller's torch random state is left as it
    was."""
    torch = _torch()
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError("input_shape must be positive dimensions, not %r"
                         % (input_shape,))
    if int(batch_size) < 1:
        raise ValueError("batch_size must be at least 1")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((int(batch_size),) + shape, generator=generator)
    was_training = model.training
    # Tracing in training mode runs a forward pass, which moves the batch
    # norms' running statistics: they are put back, so that exporting
    # twice gives the same bytes (the same model id).
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    try:
        model.train(True)
        torch.onnx.export(model, x, buffer,
                          training=torch.onnx.TrainingMode.TRAINING,
                          opset_version=opset or DEFAULT_OPSET,
                          do_constant_folding=False)
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    data = buffer.getvalue()
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data
