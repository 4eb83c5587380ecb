"""Which vendored copy of transformers' common tests runs, and the one skip reason when none fits."""

import pytest
import transformers
from transformers_common import UNAVAILABLE, CommonTestsUnavailable, vendored_folder, vendored_versions


def test_the_installed_transformers_has_its_own_copy():
    # CI runs the newest release setup.py allows and its floor: each must find a copy, or .ci/run fails on the skip.
    assert vendored_folder().name in {str(version) for version in vendored_versions()}
    assert vendored_folder().name.rsplit(".", 1)[0] == transformers.__version__.rsplit(".", 1)[0]


@pytest.mark.parametrize(
    ("installed", "expected"),
    [("5.24.0", "5.24.0"), ("5.25.0", "5.25.0"), ("5.25.2", "5.25.0"), ("5.24.1", "5.24.0")],
)
def test_a_patch_release_runs_its_minor_versions_copy(installed, expected):
    assert vendored_folder(installed).name == expected


@pytest.mark.parametrize("installed", ["5.26.0", "5.23.1", "6.0.0", "5.26.0.dev0"])
def test_a_release_without_a_copy_gets_one_reason_naming_both_versions_and_the_fix(installed):
    with pytest.raises(CommonTestsUnavailable) as error:
        vendored_folder(installed)
    reason = str(error.value)
    assert reason.startswith(UNAVAILABLE) and f"transformers {installed} is installed" in reason
    assert ", ".join(map(str, vendored_versions())) in reason and "python tests/transformers_common/refresh.py" in reason
