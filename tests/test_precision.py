"""precision=auto: the policy and compiler picked from what the machine offers (the rule that
benchmarks/precision_and_flops.py measured), and explicit choices kept."""

from __future__ import annotations

import pytest

from edsr_mlflow.config import POLICIES, TrainConfig
from edsr_mlflow.errors import ConfigError
from edsr_mlflow.precision import choose_precision, cpu_flags

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2 | {"avx512f", "avx512_bf16"}
AMX = AVX512_BF16 | {"amx_tile", "amx_bf16"}


@pytest.mark.parametrize("flags, policy, xla", [
    (AVX2, "float32", False),
    (AVX512_BF16, "mixed_bfloat16", False),
    (AMX, "mixed_bfloat16", False),
])
def test_auto_on_a_cpu_follows_its_bfloat16_units(flags, policy, xla):
    choice = choose_precision("auto", gpu_capability=None, flags=flags)
    assert (choice.policy, choice.xla) == (policy, xla)
    assert choice.reason and "\n" not in choice.reason


@pytest.mark.parametrize("capability, policy", [((9, 0), "mixed_bfloat16"), ((8, 0), "mixed_bfloat16"),
                                                ((7, 5), "mixed_float16"), ((6, 1), "float32")])
def test_auto_on_a_gpu_follows_its_tensor_cores_and_compiles(capability, policy):
    choice = choose_precision("auto", gpu_capability=capability, flags=AVX2)
    assert choice.policy == policy and choice.xla
    assert f"{capability[0]}.{capability[1]}" in choice.reason


@pytest.mark.parametrize("requested", POLICIES)
@pytest.mark.parametrize("flags", [AVX2, AVX512_BF16])
def test_an_explicit_precision_is_kept(requested, flags):
    choice = choose_precision(requested, gpu_capability=None, flags=flags)
    assert choice.policy == requested and "as asked" in choice.reason


def test_bfloat16_is_compiled_only_where_the_cpu_lacks_native_units():
    assert choose_precision("mixed_bfloat16", gpu_capability=None, flags=AVX2).xla
    assert not choose_precision("mixed_bfloat16", gpu_capability=None, flags=AVX512_BF16).xla
    assert not choose_precision("float32", gpu_capability=None, flags=AVX2).xla


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_auto_is_the_default_and_unknown_precisions_are_refused():
    assert TrainConfig().precision == "auto"
    with pytest.raises(ConfigError, match="unknown precision 'half'"):
        TrainConfig(precision="half")
