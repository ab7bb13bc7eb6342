"""The TensorRT .engine runner against stand-ins with TensorRT's and cuda-python's method names (no GPU)."""

import ctypes
import json
import shutil
import sys
import types

import numpy as np
import pytest

from rtatl_sdk import store
from rtatl_sdk.errors import InputError

S = 192
N = len(json.loads((store.PACKAGE_MODELS / "model.card.json").read_text())["aus"])  # the engine uses the shipped card


class FakeCudart:
    class cudaError_t:  # noqa: N801 - cuda-python's names
        cudaSuccess = 0

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    def __init__(self):
        self.mem, self.freed, self.mallocs = {}, [], 0

    def cudaStreamCreate(self):  # noqa: N802
        return 0, "stream"

    def cudaStreamDestroy(self, stream):  # noqa: N802
        return (0,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (0,)

    def cudaMalloc(self, n):  # noqa: N802
        self.mallocs += 1
        ptr = 1000 + len(self.mem)
        self.mem[ptr] = bytearray(n)
        return 0, ptr

    def cudaFree(self, ptr):  # noqa: N802
        self.freed.append(ptr)
        return (0,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):  # noqa: N802
        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            ctypes.memmove((ctypes.c_char * n).from_buffer(self.mem[dst]), src, n)
        else:
            ctypes.memmove(dst, (ctypes.c_char * n).from_buffer(self.mem[src]), n)
        return (0,)


class FakeContext:
    """Logits of image i = the mean of image i's pixels, for every AU: rows can be traced."""

    def __init__(self, cudart, profile):
        self.cudart, self.profile, self.shapes, self.addr = cudart, profile, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = shape
        return self.profile[0] <= shape[0] <= self.profile[1]

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr

    def execute_async_v3(self, stream):
        b = self.shapes["image"][0]
        img = np.frombuffer(self.cudart.mem[self.addr["image"]], np.float32, count=b * 3 * S * S).reshape(b, -1)
        logits = np.repeat(img.mean(1, keepdims=True), N, 1).astype(np.float32)
        self.cudart.mem[self.addr["logits"]][: logits.nbytes] = logits.tobytes()
        return True


@pytest.fixture
def engine(tmp_path, monkeypatch):
    cudart = FakeCudart()
    profile = (1, 8)

    class Engine:
        def get_tensor_profile_shape(self, name, index):
            return (profile[0], 3, S, S), (4, 3, S, S), (profile[1], 3, S, S)

        def create_execution_context(self):
            return FakeContext(cudart, profile)

    trt = types.ModuleType("tensorrt")
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda data: Engine())
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda.bindings = bindings
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    path = tmp_path / "model.engine"
    path.write_bytes(b"serialized")
    shutil.copy(store.PACKAGE_MODELS / "model.card.json", tmp_path / "model.engine.card.json")
    from rtatl_sdk.engines import load_engine

    eng = load_engine(path)
    yield eng, cudart


def _inputs(b, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (b, 3, S, S)).astype(np.float32), rng.uniform(20, 170, (b, 2 * N, 2)).astype(np.float32)


def test_a_batch_beyond_the_profile_runs_in_chunks_in_order(engine):
    eng, cudart = engine
    image, centres = _inputs(20)
    out = eng.run(image, centres)
    assert out.shape == (20, N)
    assert np.allclose(out[:, 0], image.reshape(20, -1).mean(1), atol=1e-6)  # each row is its own image's
    assert cudart.mallocs == 3  # buffers allocated once, at the engine's largest batch


def test_non_contiguous_input_is_copied_not_freed_under_the_gpu(engine):
    eng, _ = engine
    image, centres = _inputs(6, seed=1)
    strided = image[::2]
    assert not strided.flags["C_CONTIGUOUS"]
    assert np.allclose(eng.run(strided, centres[::2])[:, 0], strided.reshape(3, -1).mean(1), atol=1e-6)


@pytest.mark.parametrize("case", ["float64 image", "wrong image size", "centres of other AUs", "rows differ"])
def test_inputs_are_checked_before_the_gpu(engine, case):
    eng, _ = engine
    image, centres = _inputs(2)
    bad = {"float64 image": (image.astype(np.float64), centres, "dtype float64"),
           "wrong image size": (image[:, :, :100], centres, "shape"),
           "centres of other AUs": (image, centres[:, :8], "shape"),
           "rows differ": (image, centres[:1], "1 rows for 2 images")}[case]
    with pytest.raises(InputError, match=bad[2]):
        eng.run(bad[0], bad[1])


def test_close_frees_the_buffers(engine):
    eng, cudart = engine
    eng.close()
    assert len(cudart.freed) == 3
    eng.close()  # twice is harmless
    assert len(cudart.freed) == 3


def test_a_shape_the_profile_refuses_is_an_error_not_stale_rows(engine):
    eng, _ = engine
    eng.context.profile = (1, 4)  # the engine reports 8, the context accepts only 4
    with pytest.raises(InputError, match="outside the engine's optimisation profile"):
        eng.run(*_inputs(6))


def test_tensorrt_provider_options_cache_and_profile_and_never_int8(tmp_path):
    from rtatl_sdk.engines import provider_list

    (p, opts), cuda, cpu = provider_list(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                                         tmp_path / "model.onnx", 12)
    assert p == "TensorrtExecutionProvider" and opts["trt_engine_cache_enable"] and "trt_cache" in opts["trt_engine_cache_path"]
    assert opts["trt_profile_max_shapes"] == "image:32x3x192x192,centres:32x24x2"
    assert (cuda, cpu) == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert provider_list(["TensorrtExecutionProvider", "CPUExecutionProvider"], tmp_path / "model.int8.onnx", 12) == \
        ["CPUExecutionProvider"]


def test_the_provider_in_use_is_reported_not_the_one_asked_for(model_path, caplog):
    import logging
    import warnings

    import onnxruntime as ort

    from rtatl_sdk.engines import OnnxEngine

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: nothing falls back")
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # onnxruntime's own line about the missing provider
        eng = OnnxEngine(model_path, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert eng.providers == ["CPUExecutionProvider"]
    assert "does not use CUDAExecutionProvider" in caplog.text
