"""Official detectron2 checkpoints and our own format, to and from :class:`VisoloNet`.

An official checkpoint is ``torch.save``'d ``{"model": state_dict, "optimizer": ...,
"scheduler": ..., "iteration": ...}`` whose state dict has the network under ``model.``
(our module names are the official ones, so that prefix is the whole mapping) and the
tracking branch a second time under ``tracking_module.`` (the official wrapper holds it
twice); those duplicates must equal their ``model.Tracking_branch.`` twins and are dropped.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import pickletools
import re
import struct
import zipfile
from collections.abc import Mapping

import torch

from visolo_fast.config import VisoloConfig
from visolo_fast.model.visolo import VisoloNet

FORMAT = "visolo_fast"
FORMAT_VERSION = 1
_OFFICIAL_PREFIX = "model."
_DUPLICATE_PREFIX = "tracking_module."
_DUPLICATED = "Tracking_branch."
_CLASS_KEY = "Category_branch_post.pred.weight"


class CheckpointError(ValueError):
    """A file that cannot be loaded as a VISOLO checkpoint; the message names the file and the keys.

    ``needs_trust`` is True when the file is a whole PyTorch checkpoint (by its structure: a
    torch.save zip or legacy pickle) that holds pickled Python objects a weights-only load refuses (``trusted=True`` would load it); ``detail`` is the message
    without the advice on what to do, for callers that give their own (the CLI's ``--trusted``).
    """

    def __init__(self, message: str, needs_trust: bool = False, detail: str | None = None):
        super().__init__(message)
        self.needs_trust, self.detail = needs_trust, detail or message


TRUST_HINT = "if you trust the file, pass trusted=True (a trusted load can run code stored in the file)"


def _listing(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _check_file(path: str) -> None:
    """Refuses what is plainly not a checkpoint file, before anything is read."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: a directory, not a checkpoint file (expected a .pth/.pt file written by torch.save)")
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not a regular file (expected a .pth/.pt file written by torch.save)")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: an empty file (0 bytes)")


def _check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, refused at once (before the file is read) if torch cannot
    reach it: torch's own error would come only when the weights move there, as a driver error."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"load_model: device={device!r} is not a device: {_first_sentence(exc)}") from None
    if device.type == "cuda":
        build = f"torch {torch.__version__}, {'CUDA ' + torch.version.cuda if torch.version.cuda else 'a CPU-only build'}"
        if not torch.cuda.is_available():
            raise ValueError(f"load_model: device={str(device)!r}: no GPU is visible to torch ({build}); use device='cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"load_model: device={str(device)!r}: torch sees {torch.cuda.device_count()} GPU(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def _size(n: int) -> str:
    return f"{n} bytes" if n < 10_000 else f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _first_sentence(exc: BaseException) -> str:
    """The first sentence of an exception's message, on one line, without terminal escapes
    (torch's messages run to paragraphs of advice)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    text = " ".join(text.split())
    sentence = re.split(r"(?<=[a-z)])\. ", text, maxsplit=1)[0].rstrip(".")
    return f"{type(exc).__name__}: {sentence}" if sentence and sentence != "''" else type(exc).__name__


class _NoGlobals(pickle.Unpickler):
    """An unpickler of plain values only: it imports and calls nothing."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"a global {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("a persistent id")


def _torch_format(path: str) -> str | None:
    """How torch.save wrote ``path``, from its structure: ``"zip"`` (torch >= 1.6: a zip whose
    first entry, or any entry, is ``<name>/data.pkl``), ``"legacy"`` (a pickle whose first
    object is torch's magic number), or None: not written by torch.save."""
    with open(path, "rb") as f:
        head = f.read(256)
    if head.startswith(b"PK\x03\x04") and len(head) >= 30:
        # the first local file header names its entry: torch writes data.pkl first, so this
        # holds even when the file is cut short before the zip's directory at its end
        name_length = struct.unpack_from("<H", head, 26)[0]
        if head[30:30 + name_length].endswith(b"/data.pkl"):
            return "zip"
        if zipfile.is_zipfile(path):
            with contextlib.suppress(zipfile.BadZipFile, OSError):
                with zipfile.ZipFile(path) as z:
                    if any(re.fullmatch(r"[^/]+/data\.pkl", n) for n in z.namelist()):
                        return "zip"
        return None
    try:
        # NB: from the first 256 bytes only, so a stray length field cannot make it read far
        magic = _NoGlobals(io.BytesIO(head)).load()
    except Exception:  # noqa: BLE001 -- any bytes: pickle raises UnpicklingError, EOFError, ValueError, ...
        return None
    return "legacy" if type(magic) is int and magic == torch.serialization.MAGIC_NUMBER else None


def _main_pickle_parses(path: str, form: str) -> bool:
    """Whether the pickle of the checkpoint's objects (``data.pkl``, or a legacy file's fourth
    pickle) is whole: opcode by opcode to its STOP, without running it."""
    try:
        if form == "zip":
            with zipfile.ZipFile(path) as z:
                name = next(n for n in z.namelist() if re.fullmatch(r"[^/]+/data\.pkl", n))
                stream = io.BytesIO(z.read(name))
        else:
            stream = open(path, "rb")
        with stream:
            for _ in range(1 if form == "zip" else 4):  # legacy: magic number, protocol, system info, objects
                for _ in pickletools.genops(stream):
                    pass
        return True
    except Exception:  # noqa: BLE001 -- a damaged file: zipfile, zlib, pickletools raise many kinds
        return False


def _read(path: str, trusted: bool) -> object:
    _check_file(path)
    try:
        # NB: weights_only refuses arbitrary pickled objects, so loading a file cannot run its code.
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError, ... for bad files
        form = _torch_format(path)
        # Trusting the file is the advice only for a whole torch checkpoint that the weights-only
        # load refused: random bytes make the weights-only unpickler fail too.
        if (not trusted and form is not None and isinstance(exc, pickle.UnpicklingError)
                and "weights only load failed" in str(exc).lower() and _main_pickle_parses(path, form)):
            found = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
            what = f"a pickled {found.group(1)}" if found else "pickled Python objects other than tensors and containers"
            detail = (f"{path}: not a readable PyTorch checkpoint without trusting it: it holds {what}, "
                      f"which a weights-only load refuses")
            raise CheckpointError(f"{detail}; {TRUST_HINT}", needs_trust=True, detail=detail) from exc
        raise CheckpointError(_unreadable(path, form, exc)) from exc


def _unreadable(path: str, form: str | None, exc: BaseException) -> str:
    """One line: what the file is, and torch's first sentence if it is torch's."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        size = os.path.getsize(path)
    except OSError as err:
        return f"{path}: cannot read the file: {err.strerror or err}"
    if form is not None:
        what = "a zip archive" if form == "zip" else "a pickle"
        return (f"{path}: not a readable PyTorch checkpoint: expected a file written by torch.save, got {what} of "
                f"{_size(size)} that torch cannot read, truncated or damaged? ({_first_sentence(exc)})")
    expected = f"{path}: not a PyTorch checkpoint: expected a file written by torch.save, got"
    if head.startswith(b"PK\x03\x04"):
        return f"{expected} a zip archive of {_size(size)} without a data.pkl"
    return f"{expected} {_size(size)} of something else (it starts with {head!r})"


def _official_state_dict(path: str, raw: Mapping) -> dict[str, torch.Tensor]:
    """The network's state dict from an official checkpoint, prefix stripped, duplicates checked."""
    state, duplicates, unexpected = {}, {}, []
    for key, value in raw.items():
        if key.startswith(_OFFICIAL_PREFIX):
            state[key[len(_OFFICIAL_PREFIX):]] = value
        elif key.startswith(_DUPLICATE_PREFIX):
            duplicates[_DUPLICATED + key[len(_DUPLICATE_PREFIX):]] = value
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointError(f"{path}: unexpected keys outside 'model.' and 'tracking_module.': {_listing(unexpected)}")
    for key, value in duplicates.items():
        twin = state.get(key)
        if twin is None:
            raise CheckpointError(f"{path}: tracking_module.{key[len(_DUPLICATED):]} has no twin model.{key}")
        if not isinstance(value, torch.Tensor) or value.shape != twin.shape or not torch.equal(value, twin):
            raise CheckpointError(f"{path}: tracking_module.{key[len(_DUPLICATED):]} differs from model.{key}: "
                                  "the two copies of the tracking branch must be identical")
    return state


def _check_against(path: str, state: Mapping, model: VisoloNet) -> None:
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    bad_type = [k for k in set(state) & set(expected)
                if not isinstance(state[k], torch.Tensor) or not state[k].is_floating_point()]
    misshaped = [f"{k}: {tuple(state[k].shape)} instead of {tuple(expected[k].shape)}"
                 for k in set(state) & set(expected) if k not in bad_type and state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if bad_type:
        problems.append(f"{len(bad_type)} keys that are not floating-point tensors: {_listing(bad_type)}")
    if misshaped:
        problems.append(f"{len(misshaped)} keys of the wrong shape: {_listing(misshaped)}")
    if problems:
        raise CheckpointError(f"{path}: does not match the VISOLO network ({model.config.num_classes} classes): "
                              + "; ".join(problems))


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", num_classes: int | None = None,
               config: VisoloConfig | None = None, trusted: bool = False) -> VisoloNet:
    """Loads an official VISOLO checkpoint (detectron2 ``.pth``) or one saved by :func:`save_model`.

    Args:
        path: the checkpoint file.
        device: where the network goes; a GPU that torch cannot see is refused (ValueError)
            before the file is read.
        num_classes: if given, the checkpoint must have that many classes; by default it is
            read off the category head (40 for YouTube-VIS, 80 for COCO pre-training).
        config: the inference settings (thresholds...); its ``num_classes`` is replaced by the
            checkpoint's. Default: the official settings, or those saved with our format.
        trusted: allow arbitrary pickled Python objects in the file (only for files you trust).

    Returns:
        The network in eval mode, every parameter loaded.

    Raises:
        CheckpointError: the file is missing, unreadable, truncated, not a checkpoint, or its
            keys or shapes do not match the network; nothing is loaded half-way.
        ValueError: ``device`` is not one torch can reach here (a GPU where it sees none).
    """
    device = _check_device(device)
    path = os.fspath(path)
    raw = _read(path, trusted)
    if isinstance(raw, Mapping) and raw.get("format") == FORMAT:
        if raw.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: visolo_fast format version {raw.get('version')!r}, this library reads {FORMAT_VERSION}")
        if not isinstance(raw.get("config"), Mapping) or not isinstance(raw.get("state_dict"), Mapping):
            raise CheckpointError(f"{path}: a visolo_fast file must hold a 'config' and a 'state_dict' dict")
        try:
            saved = VisoloConfig.from_dict(dict(raw["config"]))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: bad config in a visolo_fast file: {exc}") from None
        state = raw["state_dict"]
        config = config or saved
    elif isinstance(raw, Mapping) and isinstance(raw.get("model"), Mapping):
        state = _official_state_dict(path, raw["model"])
    elif isinstance(raw, Mapping) and raw and all(isinstance(k, str) and k.startswith((_OFFICIAL_PREFIX, _DUPLICATE_PREFIX)) for k in raw):
        state = _official_state_dict(path, raw)  # a bare official state dict
    else:
        what = f"a dict with keys {_listing(map(str, raw))}" if isinstance(raw, Mapping) else f"a {type(raw).__name__}"
        raise CheckpointError(f"{path}: not a VISOLO checkpoint: expected a detectron2 checkpoint "
                              f"(a dict with 'model') or a visolo_fast file, got {what}")

    head = state.get(_CLASS_KEY)
    if not isinstance(head, torch.Tensor) or head.dim() != 4:
        raise CheckpointError(f"{path}: cannot read the number of classes: key {_CLASS_KEY} is missing or not a conv weight")
    found = head.shape[0]
    if num_classes is not None and num_classes != found:
        raise CheckpointError(f"{path}: has {found} classes ({_CLASS_KEY} is {tuple(head.shape)}), "
                              f"but num_classes={num_classes} was asked for")
    config = VisoloConfig.from_dict({**(config or VisoloConfig()).to_dict(), "num_classes": found})
    model = VisoloNet(config)
    _check_against(path, state, model)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


def save_model(model: VisoloNet, path: str | os.PathLike) -> None:
    """Saves the network and its config; :func:`load_model` gives it back exactly."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "version": FORMAT_VERSION, "config": model.config.to_dict(), "state_dict": state},
               os.fspath(path))


def official_state_dict(model: VisoloNet) -> dict[str, torch.Tensor]:
    """The network's weights under the official key names (``model.`` and the ``tracking_module.`` copy)."""
    state = {_OFFICIAL_PREFIX + k: v.detach().cpu() for k, v in model.state_dict().items()}
    for k, v in model.Tracking_branch.state_dict().items():
        state[_DUPLICATE_PREFIX + k] = v.detach().cpu()
    return state
