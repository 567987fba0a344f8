"""Device check: the whole `cldm run --preset smoke`, then `cldm sample` and `cldm map` on its run, with
the models on a second device that the CPU simulates. The autoencoder first trains one step on the
CPU, and the run resumes it on the device from that checkpoint; its samples are drawn on the device and
again on the CPU from the checkpoints written on the device. Exits 1, naming the operation and the stage, at
the first operation that mixes devices, or at a read of a device value by the host inside a training
step (a GPU would stall there at every step); 0 when neither happens.

    python bench/device_check.py            # the built-in sample, a temporary run folder
    python bench/device_check.py --keep runs/device_check

How the second device is simulated. Every tensor the code places on the device (`.to(device)`, a
factory call with `device=`, a module's `.to(device)`, `torch.load(map_location=device)`, a
`torch.Generator(device=device)`) becomes a `DeviceTensor`: a tensor subclass that holds real CPU data
and reports `device='meta'`. A `TorchDispatchMode` sees every ATen operation, on tensors of both kinds,
forward and backward, optimiser steps included. It computes each operation on the CPU data and applies
the rule CUDA applies: the tensors of one operation live on one device, except CPU 0-d tensors (which
act as Python numbers) and CPU index tensors; `copy_`/`_to_copy` are the only operations that move
data between devices. Anything else (the CPU latents times the U-Net's scale buffer, a CPU generator
drawing a device tensor, `.numpy()` of a device tensor) raises `MixedDeviceError`. While a
`Trainer`'s step function runs, an operation that makes the host wait for the device (`.item()`,
`float(t)`, `.tolist()`, `.cpu()`, `nonzero`, `torch.equal`, `bincount` — CUDA's reads the ids' range —, a
tensor built from host data on the device: `new_tensor`, `torch.tensor(…, device=)`, …) raises `HostSyncError`. Values are exact,
so every stage runs to its end as it would on a GPU, at CPU speed: about a minute for the smoke preset.
What it does not see: CUDA-only paths (autocast, TF32, pinned memory, fused optimisers) are not taken,
since the simulated device is not CUDA; those are checked by `bench/gpu_check.sh` on a GPU.
"""
import argparse, contextlib, os, sys, tempfile, traceback
from pathlib import Path

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

DEVICE = torch.device('meta')          # what tensors on the simulated device report

class MixedDeviceError(RuntimeError):
    "An operation mixed tensors on the simulated device with CPU tensors (CUDA would refuse it)."

class HostSyncError(RuntimeError):
    "A training step read a device tensor into the host (on a GPU: the host waits for every queued kernel)."

_in_step = [False]                     # set while a `Trainer`'s step function runs
_SYNCS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default, torch.ops.aten.equal.default,
          torch.ops.aten.masked_select.default, torch.ops.aten._unique2.default, torch.ops.aten.is_nonzero.default,
          torch.ops.aten.bincount.default}       # CUDA's bincount reads the ids' min and max into the host to size its output
_HOST_DATA = (torch.tensor, torch.as_tensor)   # with Python data and `device=`: a blocking copy from pageable host memory on CUDA

def _on_device(dev) -> bool:
    return dev is not None and torch.device(dev).type == DEVICE.type

class DeviceTensor(torch.Tensor):
    "Real CPU data (`.data_`) that reports the simulated device."
    @staticmethod
    def __new__(cls, data: torch.Tensor):
        t = torch.Tensor._make_wrapper_subclass(cls, data.shape, strides=data.stride(), storage_offset=data.storage_offset(),
                                                dtype=data.dtype, device=DEVICE, requires_grad=data.requires_grad)
        t.data_ = data
        return t

    def __repr__(self): return f"DeviceTensor({self.data_!r})"
    def __tensor_flatten__(self): return ['data_'], None
    @staticmethod
    def __tensor_unflatten__(inner, meta, outer_size, outer_stride): return DeviceTensor(inner['data_'])

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None): return _run(func, args, kwargs or {})

class DeviceGenerator(torch.Generator):
    "A CPU generator that reports the simulated device (what `torch.Generator(device=...)` gives under the check)."
    @property
    def device(self): return DEVICE

_TRANSFERS = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}
_CPU_INDICES = {torch.ops.aten.index.Tensor, torch.ops.aten.index_put_.default, torch.ops.aten.index_put.default,
                torch.ops.aten._index_put_impl_.default}

def _describe(ts) -> str: return ', '.join(f"{tuple(t.shape)} {t.dtype}" for t in ts)

def _check(func, args, kwargs) -> None:
    "Raise `MixedDeviceError` when `func` mixes device tensors with CPU tensors that CUDA would refuse."
    ts = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
    dev = [t for t in ts if isinstance(t, DeviceTensor)]
    cpu = [t for t in ts if not isinstance(t, DeviceTensor)]
    if func in _CPU_INDICES: cpu = [t for t in cpu if t is args[0]]         # CPU index tensors are allowed
    if not (dev and cpu) or func in _TRANSFERS: return
    if any(t.dim() for t in cpu):                                            # CPU 0-d tensors act as numbers
        raise MixedDeviceError(f"{func}: device tensors [{_describe(dev)}] with CPU tensors [{_describe(cpu)}]")

def _check_sync(func, args, kwargs) -> None:
    "Inside a training step: raise `HostSyncError` on an operation that makes the host wait for the device."
    if not _in_step[0] or not any(isinstance(t, DeviceTensor) for t in tree_flatten((args, kwargs))[0]): return
    to_host = func is torch.ops.aten._to_copy.default and kwargs.get('device') is not None and not _on_device(kwargs['device'])
    if func in _SYNCS or to_host: raise HostSyncError(f"{func}: a device value read by the host inside a training step")

def _wrap(out):
    return tree_map(lambda x: DeviceTensor(x) if type(x) is torch.Tensor else x, out)

def _run(func, args, kwargs):
    "Check, compute on the CPU data, and put the results where CUDA would: on the device unless moved off it."
    if any(type(t) is torch.Tensor and t.device.type == DEVICE.type for t in tree_flatten((args, kwargs))[0]):
        raise MixedDeviceError(f"{func}: a tensor on the device without data (made past the check's view)")
    _check(func, args, kwargs)
    _check_sync(func, args, kwargs)
    dev = kwargs.get('device')
    if dev is not None: kwargs = {**kwargs, 'device': torch.device('cpu')}
    unwrap = lambda x: x.data_ if isinstance(x, DeviceTensor) else x
    with torch._C.DisableTorchFunctionSubclass():
        out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs))
    if func is torch.ops.aten.copy_.default: return args[0]
    ins = any(isinstance(t, DeviceTensor) for t in tree_flatten((args, kwargs))[0])
    to_device = _on_device(dev) if dev is not None else ins
    return _wrap(out) if to_device else out

class _Dispatch(TorchDispatchMode):
    "Every ATen operation with a device tensor, or a factory asked for the device, goes through `_run`."
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if any(issubclass(t, DeviceTensor) for t in types) or _on_device(kwargs.get('device')): return _run(func, args, kwargs)
        return func(*args, **kwargs)

class _Functions(TorchFunctionMode):
    "Python-level calls: factories with `device=` (e.g. `torch.tensor`, which builds below the dispatcher), `.numpy()`, `.tolist()`."
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dev_arg = args[0] if args and isinstance(args[0], DeviceTensor) else None
        if func is torch.Tensor.numpy and dev_arg is not None:
            raise MixedDeviceError("Tensor.numpy(): a device tensor (call .cpu() first)")
        if func is torch.Tensor.new_tensor and dev_arg is not None and 'device' not in kwargs:   # builds below the dispatcher
            if _in_step[0]: raise HostSyncError("Tensor.new_tensor(): host data copied to the device inside a training step (CUDA waits for it)")
            return _wrap(dev_arg.data_.new_tensor(*args[1:], **kwargs))
        if (func in _HOST_DATA and _in_step[0] and _on_device(kwargs.get('device')) and args
                and not isinstance(args[0], torch.Tensor)):
            raise HostSyncError(f"torch.{func.__name__}(): host data copied to the device inside a training step (CUDA waits for it)")
        if func in (torch.Tensor.tolist, torch.Tensor.__array__) and dev_arg is not None:
            if _in_step[0]: raise HostSyncError(f"Tensor.{func.__name__}(): a device value read by the host inside a training step")
            return func(dev_arg.data_, *args[1:], **kwargs)
        gen = kwargs.get('generator')
        if gen is not None and 'device' in kwargs and _on_device(kwargs['device']) != isinstance(gen, DeviceGenerator):
            raise MixedDeviceError(f"{getattr(func, '__name__', func)}: a {'device' if isinstance(gen, DeviceGenerator) else 'CPU'} "
                                   f"generator drawing a tensor on {kwargs['device']}")
        if _on_device(kwargs.get('device')) and func is not torch.Tensor.to:     # built on the CPU data, placed on the device
            unwrap = lambda x: x.data_ if isinstance(x, DeviceTensor) else x
            with torch._C.DisableTorchFunctionSubclass():
                return _wrap(func(*tree_map(unwrap, args), **{**tree_map(unwrap, kwargs), 'device': torch.device('cpu')}))
        return func(*args, **kwargs)

def _generator(device='cpu'):
    return DeviceGenerator() if _on_device(device) else _RealGenerator(device)

_RealGenerator, _real_load, _real_save, _real_autocast = torch.Generator, torch.load, torch.save, torch.autocast

def _autocast(device_type: str, *a, **kw):
    "Autocast on the simulated device: off (it is CUDA's bf16 path that `gpu_check.sh` measures)."
    return _real_autocast('cpu', enabled=False) if device_type == DEVICE.type else _real_autocast(device_type, *a, **kw)

def _load(f, map_location=None, **kw):
    "`torch.load` onto the simulated device: read onto the CPU, then place every tensor on the device."
    if not _on_device(map_location if isinstance(map_location, (str, torch.device)) else None):
        return _real_load(f, map_location=map_location, **kw)
    return _wrap(_real_load(f, map_location='cpu', **kw))

def _save(obj, f, *a, **kw):
    "`torch.save` of device tensors writes their CPU data, as a GPU checkpoint loads on a CPU."
    return _real_save(tree_map(lambda x: x.data_ if isinstance(x, DeviceTensor) else x, obj), f, *a, **kw)

def _watched(step_fn):
    "A step function that runs with host reads of device values forbidden."
    def step(tr, batch):
        _in_step[0] = True
        try: return step_fn(tr, batch)
        finally: _in_step[0] = False
    return step

@contextlib.contextmanager
def simulated_device(watch_steps: bool = True):
    "Within the block, `DEVICE` is a second device whose tensors hold CPU data; mixing it with the CPU raises `MixedDeviceError`."
    swap = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)      # `module.to(device)` keeps each parameter's identity, as on CUDA
    torch.Generator, torch.load, torch.save, torch.autocast = _generator, _load, _save, _autocast
    from cldm_nb.train import Trainer
    init = Trainer.__init__
    def watched_init(self, *a, **kw):
        init(self, *a, **kw)
        if watch_steps: self.step_fn = _watched(self.step_fn)
    Trainer.__init__ = watched_init
    try:
        with _Functions(), _Dispatch(): yield DEVICE
    finally:
        torch.Generator, torch.load, torch.save, torch.autocast = _RealGenerator, _real_load, _real_save, _real_autocast
        Trainer.__init__ = init
        torch.__future__.set_swap_module_params_on_conversion(swap)

def self_test() -> None:
    "The check catches what CUDA refuses and lets through what CUDA allows, on a small model trained for two steps."
    with simulated_device() as dev:
        m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))
        opt = torch.optim.AdamW(m.parameters(), 1e-3); m.to(dev)
        x = torch.randn(2, 3, 8, 8).to(dev)
        for _ in range(2):
            loss = m(x).square().mean() * torch.tensor(2.); opt.zero_grad(); loss.backward(); opt.step()
        assert isinstance(m[0].weight, DeviceTensor) and m[0].weight.grad.device == dev and loss.item() > 0
        assert x[torch.tensor([1, 0])].device == dev
        for wrong in (lambda: x + torch.randn(2, 3, 8, 8),                        # a CPU tensor with a device tensor
                      lambda: torch.randn(4) * torch.tensor(2., device=dev),      # the device scalar that `train_ldm` hit
                      lambda: x.numpy(),
                      lambda: torch.randn(3, generator=torch.Generator(), device=dev)):
            try: wrong()
            except MixedDeviceError: continue
            raise AssertionError("the device check let a cross-device operation through")
        watched = _watched(lambda tr, fn: fn())
        for waits in (lambda: x.new_tensor([1., 2.]),                                 # what the IMSAT augmentation did
                      lambda: torch.bincount(torch.tensor([0, 2]).to(dev), minlength=4),   # the quantiser's code counts
                      lambda: torch.as_tensor(3, device=dev)):                        # the U-Net's time step from an int
            try: watched(None, waits)
            except HostSyncError: continue
            raise AssertionError("the device check let a host wait inside a training step through")

def _stage_log(stage: list[str]):
    "A `log` for `run_pipeline` that prints and remembers the stage being run."
    def log(msg: str):
        print(msg, flush=True)
        if msg.startswith('[') and msg.endswith('…'): stage[0] = msg.split('] ', 1)[1].rstrip(' …')
    return log

def _where(tb) -> str:
    "The innermost frames of the library (and this check's callers) in a traceback."
    frames = [f for f in traceback.extract_tb(tb) if '/cldm_nb/' in f.filename]
    return '\n'.join(f"    {Path(f.filename).name}:{f.lineno} in {f.name}: {f.line}" for f in frames[-4:])

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--keep', help='run folder to use and keep (default: a temporary one)')
    p.add_argument('--mixing-only', action='store_true', help='check device mixing only, not host reads inside training steps')
    args = p.parse_args(argv)
    os.environ.setdefault('MPLBACKEND', 'Agg')
    import warnings; warnings.filterwarnings('ignore')
    from cldm_nb.cli import main as cldm
    from cldm_nb.data import load_tiles, sample_data, split_indices
    from cldm_nb.config import RunConfig
    from cldm_nb.pipeline import run_pipeline
    from cldm_nb.slides import write_test_slide
    from cldm_nb.vqgan import train_vqgan
    self_test(); print("device check: the simulated device refuses CPU/device mixing and runs a training step")
    stage = ['start']
    with tempfile.TemporaryDirectory() as tmp:
        run, slide, tiles = Path(args.keep or Path(tmp)/'run'), Path(tmp)/'slide.tif', Path(tmp)/'tiles.npy'
        sample = load_tiles(sample_data())
        write_test_slide(slide, sample[:24]); np.save(tiles, sample[:40])     # 40 tiles: every stage, a few steps each
        smoke = lambda dev: run_pipeline(tiles, run, RunConfig.smoke(), dev, log=_stage_log(stage))
        sample = lambda dev, out: cldm(['sample', '--run', str(run), '--out', str(Path(tmp)/out), '--cluster', '0', '-n', '2', '--device', str(dev)])
        first_step = lambda dev: train_vqgan(load_tiles(tiles)[split_indices(40)[0]], RunConfig.smoke().vqgan, run/'vqgan', device=dev, max_steps=1, progress=False)
        steps = [('the autoencoder\'s first step on the CPU', True, first_step),
                 ('cldm run --preset smoke, resumed on the device from that checkpoint', False, smoke),
                 ('cldm sample', False, lambda dev: sample(dev, 'samples')),
                 ('cldm sample on the CPU, from checkpoints written on the device', True, lambda dev: sample('cpu', 'samples_cpu')),
                 ('cldm map', False, lambda dev: cldm(['map', '--run', str(run), '--slide', str(slide), '--out', str(Path(tmp)/'map.png'),
                                                       '--device', str(dev)]))]
        for name, on_cpu, step in steps:
            stage[0] = name
            try:
                with contextlib.nullcontext('cpu') if on_cpu else simulated_device(not args.mixing_only) as dev: step(dev)
            except (MixedDeviceError, HostSyncError) as e:
                print(f"\ndevice check FAILED in {name}, stage '{stage[0]}':\n  {e}\n{_where(e.__traceback__)}", file=sys.stderr)
                return 1
            print(f"device check: {name}: done", flush=True)
    print("device check passed: no operation mixed the CPU and the device, no training step read the device")
    return 0

if __name__ == '__main__': sys.exit(main())
