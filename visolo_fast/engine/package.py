"""The frame function as an AOTInductor package: one file that runs a frame from Python or
from C++ (``torch::inductor::AOTIModelPackageLoader``) without tracing or compiling anything.

:func:`export_package` exports the fast engine's frame function
(:func:`~visolo_fast.engine.frame.run_frame`: network, memory read, grid weight, extraction)
at fixed shapes for one stream, with ``torch.export``, and compiles it with AOTInductor.
The stored frames are its one dynamic dimension: the memory is read at its true length
(``lengths`` masks nothing), so one model serves every memory size. The first frame of a
stream reads itself, selected in the graph by ``lengths == 0`` (``first=True`` in the frame
function; on a later frame the selection keeps the memory as it is).

The package's interface (what :class:`PackageRunner` and the C++ tracker feed it):

- inputs: ``images`` float32 [1, 3, H, W] (normalised, ``input_size``), ``keys`` [1, T * S, D],
  ``values`` [1, T * S, 2 dim] (the stored frames, T >= 1: one zero entry on a first frame),
  ``lengths`` int64 [1] (T * S; 0 on a first frame), ``source_keys`` [1, 2, S, D] (the
  grid weight's two frames), ``weighted`` bool [1] (False on a first frame);
- outputs: ``keys`` [1, S, D], ``values`` [1, S, 2 dim] (the frame's memory entry), ``query``
  [1, S, D], then the fields of its instance slots
  (:class:`~visolo_fast.engine.instances.InstanceSlots`: masks, index, labels, scores,
  score_vecs, grids, count);
- metadata: :data:`FORMAT`, the dtype, the device, the checkpoint, every
  :class:`~visolo_fast.config.VisoloConfig` field as JSON (``visolo_fast.config.<field>``),
  and the vector instructions a CPU package was compiled for beyond those inductor names
  (``visolo_fast.cpu_isa_extra``: AVX512_BF16).

The C++ tracker mirrors these rules in cpp/src/package.cpp (visolo::Package: the metadata
and ISA checks, the loader): a change here is made there too (tests/cpp/tracker_parity.py
compares the two).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform

import torch

from visolo_fast import backends
from visolo_fast.config import VisoloConfig
from visolo_fast.engine.frame import FrameOut, MemoryRead
from visolo_fast.engine.instances import InstanceSlots
from visolo_fast.engine.precision import DTYPES, dtype_name, ieee_float32
from visolo_fast.engine.runner import NetworkRunner
from visolo_fast.engine.stages import stage
from visolo_fast.model.visolo import memory_entry_shapes

FORMAT = "1"  # the package's interface and metadata; a change makes older packages refused
# The config fields applied outside the package (the tracker's, the memory's cap): a package
# runs with other values of these (a cap up to the one it was built with).
CHANGEABLE = ("tracking_thr", "max_lost_frames", "max_memory_frames")


class PackageError(ValueError):
    """A package that cannot be run as asked: the message names the file and what is wrong."""


class _Frame(torch.nn.Module):
    """The frame function of one stream as a module of tensors (what ``torch.export`` takes)."""

    def __init__(self, runner: NetworkRunner):
        super().__init__()
        self.runner = runner
        self.net = runner.net  # NB: registered, so that export lifts the weights as the module's

    def forward(self, images, keys, values, lengths, source_keys, weighted):
        out = self.runner.frame(images, MemoryRead(keys, values, lengths, source_keys, weighted), first=True)
        return (out.keys, out.values, out.query, *out.instances[0])


def export_package(net, path: str | os.PathLike, dtype: torch.dtype = torch.float32,
                   checkpoint: str = "random weights (demo)") -> str:
    """Writes the frame function of ``net`` (on its device, in ``dtype``) as an AOTInductor package.

    Args:
        net (VisoloNet): the network and its config (``max_memory_frames`` bounds the
            package's memory: a package built with a cap runs with that cap or a smaller one).
        path: the ``.pt2`` file to write.
        dtype: the network's dtype in the package (the decisions stay float32).
        checkpoint: where the weights came from, recorded in the package.

    Returns:
        The package's path. On the CPU the code is compiled for this machine's vector
        instructions (AVX2, AVX-512): export on the machine it will run on, or one like it.
    """
    if dtype not in DTYPES.values():
        raise ValueError(f"export_package: dtype must be one of {list(DTYPES)}, got {dtype!r}")
    check_path(path)
    device = next(net.parameters()).device
    runner = NetworkRunner(net, dtype, "auto", compile=False, cuda_graphs=False, fixed_shapes=True)
    config = net.config
    S, shapes = config.num_grids, net.memory_entry_shapes()
    example = (torch.zeros((1, 3, *config.input_size), device=device),
               *(torch.zeros((1, 2 * S, *shapes[name][1:]), dtype=dtype, device=device) for name in ("keys", "values")),
               torch.tensor([2 * S], device=device), torch.zeros((1, 2, *shapes["keys"]), dtype=dtype, device=device),
               torch.tensor([True], device=device))
    cap = {} if config.max_memory_frames is None else {"max": config.max_memory_frames}
    stored = torch.export.Dim("stored_frames", min=1, **cap)
    dynamic = {"images": None, "keys": {1: S * stored}, "values": {1: S * stored}, "lengths": None,
               "source_keys": None, "weighted": None}
    with torch.no_grad(), ieee_float32(device):
        program = torch.export.export(_Frame(runner).eval(), example, dynamic_shapes=dynamic, strict=False)
    metadata = {"visolo_fast.format": FORMAT, "visolo_fast.dtype": dtype_name(dtype),
                "visolo_fast.device": device.type, "visolo_fast.checkpoint": checkpoint,
                "visolo_fast.cpu_isa_extra": _unnamed_isa() if device.type == "cpu" else "",
                **{f"visolo_fast.config.{k}": json.dumps(v) for k, v in config.to_dict().items()}}
    # NB: freezing on the CPU, as compile=True: the weights become constants (FrozenBN folded
    # into the convolutions, oneDNN's prepacked weights).
    options = {"aot_inductor.metadata": metadata, "freezing": device.type == "cpu"}
    return torch._inductor.aoti_compile_and_package(program, package_path=os.fspath(path), inductor_configs=options)


def check_path(path: str | os.PathLike) -> None:
    """A package's file name ends with .pt2 (AOTInductor writes no other)."""
    if not os.fspath(path).endswith(".pt2"):
        raise ValueError(f"export_package: path must end with .pt2 (AOTInductor's packages), got {os.fspath(path)!r}")


def _unnamed_isa() -> str:
    """AVX512_BF16 where inductor compiles this machine's code with it: its ISA's name
    (AOTI_CPU_ISA, "AVX512") does not say so, and a CPU without it would stop at an illegal
    instruction."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    return "AVX512_BF16" if "-mavx512bf16" in pick_vec_isa().build_arch_flags() else ""


class PackageRunner:
    """Runs a frame of B streams through a package (what :class:`~visolo_fast.engine.engine.Engine`
    asks of its runner), one stream at a time: the package's batch is one stream."""

    fixed_shapes = False  # NB: the memory is read at its true length (the package's dynamic dimension)

    def __init__(self, path: str | os.PathLike, changes: dict | None = None):
        self.path = os.fspath(path)
        self.model, self.config, self.dtype, self.device, self.checkpoint = load(self.path, changes or {})

    def memory_entry_shapes(self) -> dict[str, tuple[int, ...]]:
        return memory_entry_shapes(self.config)

    def frame(self, images: torch.Tensor, memory: MemoryRead, first: bool) -> FrameOut:
        """As :meth:`NetworkRunner.frame`; the package selects a first frame's memory itself
        (``lengths`` 0). Several streams' memories are padded to the longest: the package
        reads each up to its ``lengths``."""
        with stage("network"):  # NB: timed whole: the package's passes are compiled into one
            outs = [self.model.boxed_run([images[b:b + 1].contiguous(), *(x[b:b + 1] for x in memory)])
                    for b in range(images.shape[0])]
        keys, values, query = (torch.cat([out[i] for out in outs]) for i in range(3))
        return FrameOut(keys, values, query, [InstanceSlots(*out[3:]) for out in outs])


def load(path: str, changes: dict):
    """The package's model and what it was built with; refuses another format, or config
    changes it was not built for. Returns (model, config, dtype, device, checkpoint)."""
    if not backends.extension_loaded():
        raise PackageError(f"{path}: a package calls visolo_fast's C++ ops, and the extension is not built: "
                           f"{backends.BUILD_HINT}")
    # NB: the format and the CPU first, from the package's metadata file, before its model loads
    # (a package of another format may call ops this version does not register).
    _file_metadata(path)
    try:
        model = _load_model(path)
    except Exception as exc:  # noqa: BLE001  (the loader's errors name no file)
        raise PackageError(f"{path}: not a loadable AOTInductor package: {str(exc).splitlines()[0]}") from exc
    # The settings: the metadata compiled into the model (a copy of the file's, which could be edited).
    metadata = model.get_metadata()
    _check_metadata(path, metadata)
    built = _config(metadata)
    device = torch.device(metadata["visolo_fast.device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PackageError(f"{path}: a CUDA package, and this machine has no GPU: export a CPU package "
                           f"(`python -m visolo_fast export --device cpu`)")
    return model, _changed(path, built, changes), DTYPES[metadata["visolo_fast.dtype"]], device, \
        metadata["visolo_fast.checkpoint"]


def built_config(path: str | os.PathLike) -> VisoloConfig:
    """The config a package was built for, from its metadata file (its model is not loaded)."""
    return _config(_file_metadata(os.fspath(path)))


def check_file(path: str) -> None:
    """Refuses what is plainly no package file (nothing, a folder, not a regular file, not
    readable) before the loader reads it: its errors ("file open failed", "Shared model
    directory is empty") name neither the file nor what is wrong with it."""
    expected = "give the .pt2 file `python -m visolo_fast export` writes"
    if not os.path.exists(path):
        raise PackageError(f"{path}: no such package file (write one with `python -m visolo_fast export --out {path}`)")
    if os.path.isdir(path):
        raise PackageError(f"{path}: a folder, not a package file; {expected}")
    if not os.path.isfile(path):
        raise PackageError(f"{path}: not a regular file; {expected}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise PackageError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def _file_metadata(path: str) -> dict:
    """The package's metadata file, checked (:func:`check_file`, :func:`_check_metadata`)."""
    check_file(path)
    try:
        metadata = torch._C._aoti.AOTIModelPackageLoader.load_metadata_from_package(path, "model")
    except Exception as exc:  # noqa: BLE001  (the loader's errors name no file)
        raise PackageError(f"{path}: not a loadable AOTInductor package: {str(exc).splitlines()[0]}") from exc
    _check_metadata(path, metadata)
    return metadata


def _config(metadata: dict) -> VisoloConfig:
    return VisoloConfig.from_dict({k.removeprefix("visolo_fast.config."): json.loads(v) for k, v in metadata.items()
                                   if k.startswith("visolo_fast.config.")})


def _check_metadata(path: str, metadata: dict) -> None:
    """The package's format, its keys, and the CPU it was compiled for."""
    version = metadata.get("visolo_fast.format")
    if version != FORMAT:
        raise PackageError(f"{path}: package format {version!r}, this visolo_fast runs format {FORMAT!r}: export it "
                           f"again with `python -m visolo_fast export`")
    missing = [k for k in ("visolo_fast.dtype", "visolo_fast.device", "visolo_fast.checkpoint")
               if k not in metadata]
    if missing or metadata["visolo_fast.dtype"] not in DTYPES or metadata["visolo_fast.device"] not in ("cpu", "cuda"):
        raise PackageError(f"{path}: not a usable visolo_fast package: its metadata lacks {missing} or has another "
                           f"dtype or device ({metadata.get('visolo_fast.dtype')!r}, "
                           f"{metadata.get('visolo_fast.device')!r})")
    _check_isa(path, metadata)


def _load_model(path: str):
    """The package's model loader (``torch._C._aoti.AOTIModelPackageLoader``, as C++ has it).

    NB: not ``torch._inductor.aoti_load_package``: to compare the package's vector ISA with
    this machine's, that asks inductor for the machine's best ISA, which inductor finds by
    compiling and running a probe program per candidate (about 6 s at the first load on a
    machine, a fresh container's every start), and then only warns of a mismatch. The CPU's
    flags answer the question, and a mismatch is refused (:func:`_check_isa`). Called with a
    list of tensors (``boxed_run``), it also skips the call spec's parsing on every frame.
    """
    return torch._C._aoti.AOTIModelPackageLoader(path, "model", False, 1, -1)


def _check_isa(path: str, metadata: dict) -> None:
    """Refuses a CPU package compiled for vector instructions this CPU lacks (it would stop
    with an illegal instruction at its first frame)."""
    from torch._inductor.cpu_vec_isa import x86_isa_checker

    wanted = (metadata.get("AOTI_CPU_ISA", "") + " " + metadata.get("visolo_fast.cpu_isa_extra", "")).lower().split()
    if metadata.get("AOTI_DEVICE_KEY") != "cpu" or not wanted or platform.machine() not in ("x86_64", "AMD64"):
        return
    here = x86_isa_checker() + (["avx512_bf16"] if torch.cpu._is_avx512_bf16_supported() else [])
    missing = [isa for isa in wanted if isa not in here]
    if missing:
        raise PackageError(f"{path}: compiled for {' '.join(wanted).upper()}, and this CPU lacks "
                           f"{' '.join(missing).upper()} (it has {' '.join(here).upper() or 'neither AVX2 nor AVX-512'}): "
                           f"export the package on a machine like this one")


def _changed(path: str, built: VisoloConfig, changes: dict) -> VisoloConfig:
    """The package's config with ``changes``: those the tracker applies, and a memory cap up
    to the package's; any other is refused (it is compiled into the package)."""
    fields = built.to_dict()
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise PackageError(f"{path}: unknown config fields {unknown}")
    fixed = {k: v for k, v in changes.items() if k not in CHANGEABLE and v != fields[k]}
    cap, built_cap = changes.get("max_memory_frames", built.max_memory_frames), built.max_memory_frames
    if built_cap is not None and (cap is None or cap > built_cap):
        fixed["max_memory_frames"] = cap
    if fixed:
        got = ", ".join(f"{k}={v!r} (built with {fields[k]!r})" for k, v in fixed.items())
        raise PackageError(f"{path}: the package was not built for {got}; export a package with "
                           f"{'it' if len(fixed) == 1 else 'them'}")
    return dataclasses.replace(built, **changes)
