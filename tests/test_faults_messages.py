"""Fault injection, messages (issue 18, case 7): bad estimator inputs and repeated tasks are
refused with errors that name the thing to fix (the file-naming cases are in
test_faults_models.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pidlib.data.minigqa.questions import generate
from pidlib.pid.gaussian import gaussian_mi, gaussian_pid

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("cov", ["abc", [[1.0, 0.0], [0.0]], {"a": 1}, [["x", "y"], ["z", "w"]]])
def test_a_non_numeric_cov_is_named(cov):
    """``cov="abc"`` surfaced numpy's "could not convert string to float"."""
    with pytest.raises(ValueError, match="cov must be a square matrix of real numbers"):
        gaussian_mi(cov, (1, 1))


def test_a_complex_cov_is_refused():
    """A complex covariance silently lost its imaginary part (numpy's ComplexWarning only)."""
    cov = np.eye(3, dtype=complex)
    cov[0, 2], cov[2, 0] = 0.5j, -0.5j
    with pytest.raises(ValueError, match="cov is complex"):
        gaussian_mi(cov, (2, 1))
    with pytest.raises(ValueError, match="cov is complex"):
        gaussian_pid(cov, (1, 1, 1))
    real = np.eye(3) + 0.2  # a real matrix still works, whatever container holds it
    assert gaussian_mi(real.astype(object), (2, 1)) == gaussian_mi(real, (2, 1))


def test_a_task_given_twice_is_refused():
    """``generate([A, A], 2)`` gave every question of A twice under the same ids."""
    with pytest.raises(ValueError, match="tasks: ChooseAttr given more than once"):
        generate(["ChooseAttr", "QueryAttr", "ChooseAttr"], 2)
    samples = generate(["ChooseAttr", "QueryAttr"], 2)
    assert len({s.qid for s in samples}) == len(samples) == 4
