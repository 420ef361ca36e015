"""ONNX files derived from the safetensors weights: exported offline, cached, keyed, never trusted half-written.

The safetensors files and their card stay the only source of truth. An ONNX file is a cache entry made from
one of them by ``torch.onnx.export`` (TorchScript exporter, opset 17, only the batch axis dynamic) and is named
after what it was made from: the weights file's SHA-256 plus the versions of torch, onnx and onnxruntime and this
module's export format. Changed weights or a library upgrade therefore give a new name, never a stale hit.

Each entry is two files in ``<cache>/onnx/``: ``<name>.onnx``, then ``<name>.json`` (the manifest: the key, the
ONNX file's size and SHA-256), both written temp-then-rename, the manifest last. An entry is used only when its
manifest matches the key and the file's size and hash match the manifest, so a truncated, swapped or unreadable
file is rebuilt, not loaded. Exports run under a per-entry file lock: two processes starting together export once,
and the second waits for the first's file instead of writing its own.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from lggdemo._fs import atomic_write_bytes, cache_dir, exclusive_lock
from lggdemo.models import MODELS
from lggdemo.models.preprocess import CLINICAL_FEATURES
from lggdemo.models.weights import sha256_file

#: The ONNX operator set: what ONNX Runtime 1.x and the TorchScript exporter both handle for these networks.
OPSET = 17
#: Bump when the export itself changes (names, axes, wrappers): every cached file is then rebuilt.
EXPORT_FORMAT = 1
SEG_INPUTS, SEG_OUTPUTS = ("image",), ("logits",)
GRADE_INPUTS, GRADE_OUTPUTS = ("image", "clinical"), ("logit",)
#: Cache entries kept per network kind (the active weights, the lesson's comparison, a few recent runs).
KEEP_PER_KIND = 4
#: How the ONNX files are made, as the model card and weights/README.md say it.
DERIVED_FILES_NOTE = (
    "ONNX graphs for the ONNX Runtime engine are derived, never stored in a weights folder: each is exported on "
    "first use from the safetensors file listed here (torch.onnx.export, TorchScript exporter, opset 17, only the "
    "batch axis dynamic, nothing downloaded), cached in $LGG_CACHE_DIR/onnx under a name keyed by that file's "
    "SHA-256 and the torch, onnx and onnxruntime versions, written temp-then-rename with a manifest of its own "
    "SHA-256, and rebuilt when missing, stale or damaged. Their outputs match PyTorch's to about 1e-5."
)


def library_versions() -> dict[str, str]:
    """Versions that decide what an export contains (and so belong in its key)."""
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


@dataclass(frozen=True)
class ExportKey:
    """Everything an ONNX file depends on: the weights' bytes and the tools that turned them into a graph."""

    kind: str  # "segmentation" or "grade"
    weights_sha256: str
    torch: str
    onnx: str
    onnxruntime: str
    opset: int = OPSET
    export_format: int = EXPORT_FORMAT

    @property
    def stem(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return f"{self.kind}-{self.weights_sha256[:16]}-{digest[:12]}"


def export_key(kind: str, weights_file: Path) -> ExportKey:
    """What names a graph in the cache: the network kind, its safetensors file's SHA-256 and the library versions."""
    return ExportKey(kind, sha256_file(weights_file), **library_versions())


def onnx_dir() -> Path:
    """The cache folder of exported graphs (``$LGG_CACHE_DIR/onnx``)."""
    return cache_dir() / "onnx"


def _example_inputs(kind: str, module: nn.Module, image_size: int, in_channels: int = 3) -> tuple[torch.Tensor, ...]:
    """Inputs of batch 2 to trace with (batch 1 could be specialised away); values do not matter, shapes do."""
    if kind == "segmentation":
        return (torch.zeros(2, in_channels, image_size, image_size),)
    return (torch.zeros(2, 3, image_size, image_size), torch.zeros(2, len(CLINICAL_FEATURES)))


def export_bytes(kind: str, module: nn.Module, image_size: int, *, metadata: dict[str, str] | None = None) -> bytes:
    """The ONNX graph of a network in eval mode, as bytes (``kind``: "segmentation" or "grade").

    Nothing is downloaded; the module is traced on the CPU (the ONNX engine runs there). ``metadata`` goes into
    the model's ``metadata_props`` so a file says what it was made from.
    """
    if kind not in MODELS:
        raise ValueError(f"unknown network kind {kind!r}")
    inputs, outputs = (SEG_INPUTS, SEG_OUTPUTS) if kind == "segmentation" else (GRADE_INPUTS, GRADE_OUTPUTS)
    if next(module.parameters()).device.type != "cpu":
        raise ValueError("export a CPU module: the ONNX engine runs on the CPU")
    buf = io.BytesIO()
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
            torch.onnx.export(module, _example_inputs(kind, module, image_size), buf, opset_version=OPSET,
                              dynamo=False, input_names=list(inputs), output_names=list(outputs),
                              dynamic_axes={name: {0: "batch"} for name in (*inputs, *outputs)})
    finally:
        module.train(was_training)
    data = buf.getvalue()
    if metadata:
        import onnx

        model = onnx.load_model_from_string(data)
        for k, v in metadata.items():
            model.metadata_props.add(key=k, value=v)
        data = model.SerializeToString()
    return data


# --- the cache -------------------------------------------------------------------------------------


def _manifest_path(path: Path) -> Path:
    return path.with_suffix(".json")


def entry_is_valid(path: Path, key: ExportKey) -> bool:
    """True when ``path`` holds exactly the bytes its manifest describes, for this key."""
    try:
        manifest = json.loads(_manifest_path(path).read_text())
        return (manifest.get("key") == asdict(key) and path.stat().st_size == manifest.get("size")
                and sha256_file(path) == manifest.get("sha256"))
    except (OSError, ValueError, AttributeError):  # missing, unreadable or not JSON: not valid
        return False


def discard(path: Path) -> None:
    """Remove an entry (the manifest first: a file without a manifest is never used)."""
    _manifest_path(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def _prune(folder: Path, kind: str, keep: Path) -> None:
    """Keep the newest KEEP_PER_KIND entries of a kind: each retrained run adds ~60-100 MB of derived files."""
    entries = sorted(folder.glob(f"{kind}-*.onnx"), key=lambda p: p.stat().st_mtime if p.exists() else 0,
                     reverse=True)
    for old in [p for p in entries if p != keep][KEEP_PER_KIND - 1:]:
        try:
            discard(old)
            old.with_suffix(".lock").unlink(missing_ok=True)
        except OSError:
            pass


@dataclass(frozen=True)
class CachedExport:
    path: Path
    key: ExportKey
    exported: bool  # False: a valid entry was already there (this process, or another one, made it)


def cached_export(kind: str, weights_file: Path, build: Callable[[], tuple[nn.Module, int]],
                  *, rebuild: bool = False) -> CachedExport:
    """The cache entry for ``weights_file``'s network, exported under the entry's lock when missing or invalid.

    ``build`` loads the torch module and its input side; it runs only on a miss. ``rebuild`` discards the entry
    first (a file ONNX Runtime could not load). Raises OSError when the cache cannot be written.
    """
    key = export_key(kind, Path(weights_file))
    folder = onnx_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key.stem}.onnx"
    if not rebuild and entry_is_valid(path, key):
        return CachedExport(path, key, False)
    with exclusive_lock(folder / f"{key.stem}.lock"):
        if rebuild:
            discard(path)
        elif entry_is_valid(path, key):  # another process finished it while this one waited
            return CachedExport(path, key, False)
        module, size = build()
        data = export_bytes(kind, module, size, metadata={
            "lggdemo.derived_from": Path(weights_file).name, "lggdemo.weights_sha256": key.weights_sha256,
            "lggdemo.exporter": f"torch {key.torch} (TorchScript exporter, opset {key.opset}); "
                                f"onnx {key.onnx}; onnxruntime {key.onnxruntime}"})
        del module
        _manifest_path(path).unlink(missing_ok=True)  # never a new file under an old manifest
        atomic_write_bytes(path, data)
        manifest = {"key": asdict(key), "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                    "derived_from": str(Path(weights_file).resolve()), "writer_pid": os.getpid()}
        atomic_write_bytes(_manifest_path(path), (json.dumps(manifest, indent=2) + "\n").encode())
        _prune(folder, kind, path)
    return CachedExport(path, key, True)
