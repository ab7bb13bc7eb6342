"""The bench package's helpers that label its tables: the CPU kind and the groups of threads."""

from bench.bench_face_thread import _thread_group
from bench.common import cpu_kind


def _cpuinfo(flags: str) -> str:
    return f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 {flags}\n"


def test_cpu_kind_names_the_kinds_the_readme_speaks_of():
    assert cpu_kind(_cpuinfo("avx2 avx512f avx512_vnni")) == "AVX-512/VNNI"
    assert cpu_kind(_cpuinfo("avx2 avx512f")) == "AVX-512 (no VNNI)"
    assert cpu_kind(_cpuinfo("avx2 avx_vnni")) == "AVX2 with AVX-VNNI"
    assert cpu_kind(_cpuinfo("avx2")) == "AVX2"
    assert cpu_kind(_cpuinfo("neon")) == "other"
    assert cpu_kind("") == "other"


def test_threads_are_grouped_by_their_python_or_native_names():
    py = {"1": "MainThread", "2": "rtatl-face-thread_0", "3": "rtatl-decode", "4": "ThreadPoolExecutor-3_0", "5": "mine"}
    assert _thread_group("python", py, "1").startswith("AU thread")
    assert _thread_group("python", py, "2").startswith("face thread")
    assert _thread_group("python", py, "3").startswith("decoder (reading")
    assert _thread_group("python", py, "4").startswith("MediaPipe's dispatcher")
    assert _thread_group("python", py, "5") == "other Python thread (mine)"
    assert _thread_group("drishti", py, "9").startswith("MediaPipe's graph threads")
    assert _thread_group("av:h264:df0", py, "9").startswith("decoder (FFmpeg")
    assert _thread_group("python", py, "9").startswith("native pools")
