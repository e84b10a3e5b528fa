"""Fuzzing fused_topk and cross_features (see tests/kernel_fuzz.py): a quick
pass in every run, thousands of cases in the slow-marked tests (which
scripts/asan_fuzz.sh runs under AddressSanitizer)."""

import os
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from kernel_fuzz import check_cross, check_fused, cross_cases, fused_cases

SLOW_EXAMPLES = int(os.environ.get("GENRE_SERVE_FUZZ_EXAMPLES", "3000"))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
SLOW = settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                derandomize=True)
outcomes: Counter = Counter()


@FAST
@given(fused_cases())
def test_fused_topk_fuzz_quick(args):
    outcomes["fused " + check_fused(args)] += 1


@FAST
@given(cross_cases())
def test_cross_features_fuzz_quick(args):
    outcomes["cross " + check_cross(args)] += 1


@pytest.mark.slow
@SLOW
@given(fused_cases())
def test_fused_topk_fuzz(args):
    outcomes["fused " + check_fused(args)] += 1


@pytest.mark.slow
@SLOW
@given(cross_cases())
def test_cross_features_fuzz(args):
    outcomes["cross " + check_cross(args)] += 1


def test_the_extension_under_test_is_the_one_asked_for():
    from genre_serve.kernels import cpu

    wanted = os.environ.get("GENRE_SERVE_TEST_EXTENSION")
    if wanted:  # scripts/asan_fuzz.sh: the sanitizer build, not the installed one
        assert os.path.samefile(sys.modules["genre_serve._C"].__file__, wanted)
        assert os.path.samefile(cpu._C.__file__, wanted)


def test_the_fuzz_reaches_both_outcomes():
    # Runs after the fuzz tests (file order): both valid and invalid calls were made.
    print("fuzz cases:", dict(sorted(outcomes.items())))  # shown by scripts/asan_fuzz.sh (-rA)
    assert outcomes["fused returned"] and outcomes["fused raised"], outcomes
    assert outcomes["cross returned"] and outcomes["cross raised"], outcomes
