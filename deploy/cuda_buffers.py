"""Device buffers and a CUDA stream for the TensorRT runner, with or without torch.

TensorRT executes on raw device pointers; something has to allocate them and copy to and from
the host. Two interchangeable providers:

* :class:`TorchBuffers`: torch CUDA tensors (NVIDIA's torch build on JetPack), used when torch
  is installed, as before;
* :class:`CudartBuffers`: the CUDA runtime library (``libcudart``, part of every CUDA, JetPack
  and TensorRT install) through :mod:`ctypes`, used when torch is not, so a device with numpy
  and TensorRT alone runs engines (no pycuda either).

Both expose ``stream`` (the handle TensorRT enqueues on), ``to_device(name, array)`` and
``output(name, shape)`` (a device pointer per tensor name, reused across runs), ``to_host`` and
``synchronize``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import numpy as np

# cudaMemcpyKind
_HOST_TO_DEVICE, _DEVICE_TO_HOST = 1, 2
_LIBRARIES = ("libcudart.so", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so.10.2")


def cuda_unavailable(library: str | os.PathLike | None = None) -> str | None:
    """Why no CUDA device can be used here, or ``None`` if one can."""
    try:
        import torch
    except ImportError:
        try:
            count = CudartBuffers.load_library(library).device_count()
        except OSError as err:
            return f"neither torch nor the CUDA runtime library can be loaded ({err})"
        return None if count > 0 else "no CUDA device is available"
    return None if torch.cuda.is_available() else "no CUDA device is available"


def make_buffers() -> TorchBuffers | CudartBuffers:
    """Torch's buffers where torch is installed, else the CUDA runtime's."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return CudartBuffers()
    return TorchBuffers()


class TorchBuffers:
    """Device memory as torch CUDA tensors on one torch stream."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.torch_stream = torch.cuda.Stream()
        self.stream = self.torch_stream.cuda_stream
        self.tensors: dict[str, object] = {}

    def to_device(self, name: str, array: np.ndarray) -> int:
        with self.torch.cuda.stream(self.torch_stream):  # ordered before the engine's work
            self.tensors[name] = self.torch.from_numpy(np.ascontiguousarray(array)).cuda()
        return self.tensors[name].data_ptr()

    def output(self, name: str, shape: tuple[int, ...]) -> int:
        torch = self.torch
        self.tensors[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
        return self.tensors[name].data_ptr()

    def to_host(self, name: str) -> np.ndarray:
        self.torch_stream.synchronize()
        return self.tensors[name].cpu().numpy()

    def synchronize(self) -> None:
        self.torch_stream.synchronize()


class _CudaRuntime:
    """The few CUDA runtime calls the runner needs, with errors named by the library."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        ptr, size, stream = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p
        for name, argtypes in {
            "cudaGetDeviceCount": [ctypes.POINTER(ctypes.c_int)],
            "cudaMalloc": [ctypes.POINTER(ptr), size],
            "cudaFree": [ptr],
            "cudaMemcpyAsync": [ptr, ptr, size, ctypes.c_int, stream],
            "cudaStreamCreate": [ctypes.POINTER(stream)],
            "cudaStreamSynchronize": [stream],
            "cudaGetErrorString": [ctypes.c_int],
        }.items():
            function = getattr(lib, name)
            function.argtypes = argtypes
            function.restype = ctypes.c_char_p if name == "cudaGetErrorString" else ctypes.c_int

    def check(self, code: int, call: str) -> None:
        if code != 0:
            reason = self.lib.cudaGetErrorString(code).decode(errors="replace")
            raise RuntimeError(f"CUDA runtime call {call} failed: {reason} (error {code})")

    def device_count(self) -> int:
        count = ctypes.c_int(0)
        code = self.lib.cudaGetDeviceCount(ctypes.byref(count))
        return count.value if code == 0 else 0  # "no device" and "no driver" are errors here


class CudartBuffers:
    """Device memory from ``cudaMalloc`` on one CUDA stream, reused while large enough."""

    def __init__(self, library: str | os.PathLike | None = None) -> None:
        self.cuda = self.load_library(library)
        handle = ctypes.c_void_p()
        self.cuda.check(self.cuda.lib.cudaStreamCreate(ctypes.byref(handle)), "cudaStreamCreate")
        self.stream = handle.value or 0
        self.memory: dict[str, tuple[int, int]] = {}  # name → (pointer, bytes)
        self.hosts: dict[str, np.ndarray] = {}  # outputs' host arrays, filled by to_host

    @staticmethod
    def load_library(library: str | os.PathLike | None = None) -> _CudaRuntime:
        """The CUDA runtime library: ``library``, else the first of the usual names found.

        Raises:
            OSError: none can be loaded.
        """
        found = ctypes.util.find_library("cudart")
        names = [str(library)] if library else [*_LIBRARIES, *([found] if found else [])]
        errors = []
        for name in names:
            try:
                return _CudaRuntime(ctypes.CDLL(name))
            except OSError as err:
                errors.append(str(err))
        raise OSError(f"no CUDA runtime library among {names}: {errors[-1]}")

    def _pointer(self, name: str, nbytes: int) -> int:
        pointer, size = self.memory.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                self.cuda.check(self.cuda.lib.cudaFree(pointer), "cudaFree")
            handle = ctypes.c_void_p()
            self.cuda.check(self.cuda.lib.cudaMalloc(ctypes.byref(handle), nbytes), "cudaMalloc")
            pointer, size = handle.value, nbytes
            self.memory[name] = (pointer, size)
        return pointer

    def _copy(self, destination: int, source: int, nbytes: int, kind: int) -> None:
        code = self.cuda.lib.cudaMemcpyAsync(destination, source, nbytes, kind, self.stream)
        self.cuda.check(code, "cudaMemcpyAsync")

    def to_device(self, name: str, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        self.hosts[name] = array  # alive until the stream has copied it
        pointer = self._pointer(name, array.nbytes)
        self._copy(pointer, array.ctypes.data, array.nbytes, _HOST_TO_DEVICE)
        return pointer

    def output(self, name: str, shape: tuple[int, ...]) -> int:
        self.hosts[name] = np.empty(shape, np.float32)
        return self._pointer(name, self.hosts[name].nbytes)

    def to_host(self, name: str) -> np.ndarray:
        host = self.hosts[name]
        self._copy(host.ctypes.data, self.memory[name][0], host.nbytes, _DEVICE_TO_HOST)
        self.synchronize()
        return host

    def synchronize(self) -> None:
        code = self.cuda.lib.cudaStreamSynchronize(self.stream)
        self.cuda.check(code, "cudaStreamSynchronize")

    def __del__(self) -> None:
        for pointer, _ in getattr(self, "memory", {}).values():
            self.cuda.lib.cudaFree(pointer)
