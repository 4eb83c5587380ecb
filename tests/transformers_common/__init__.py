"""transformers' own common test mixins, vendored per transformers version, and the one that fits the installed one.

Each folder named for a transformers release (`5.24.0/`, `5.25.0/`, ...) holds `test_modeling_common.py`,
`test_configuration_common.py` and `test_image_processing_common.py` byte for byte as that release's source
distribution ships them (Apache-2.0, see LICENSE here). The sdists ship only these top-level test files, not the test
tree they import from; the few names they import from it are small stand-ins written for mrm-hf, shared by every
version, each saying what it replaces:
- `tests/exporters/test_export.py` (`ExportTesterMixin`): a torch.export round trip of each model class;
- `tests/generation/test_utils.py` (`GenerationTesterMixin`): a marker class (MRM models do not generate);
- `tests/utils/test_configuration_utils.py` (`config_common_kwargs`): the common `PreTrainedConfig` arguments;
- `utils/fetch_hub_objects_for_ci.py` (`url_to_local_path`): skips the test, as its images are on the Hub.
`tests/__init__.py` puts the chosen version's folder on the `transformers_common.tests` package's path, so that the
vendored files' own imports (`from .generation.test_utils import ...`) resolve unchanged.

The copy that runs is the installed transformers' own version, or else the newest vendored patch release of the same
minor version at or below it (patch releases do not change the common tests' imports). Where there is none, or it
fails to import, `tests/test_transformers_common.py` skips with one reason that starts with `UNAVAILABLE` and names
both versions, and `.ci/run` fails on that reason: the standard our models pass can never vanish silently.

To vendor another transformers release (the files come from its sdist on the package registry):

    python tests/transformers_common/refresh.py 5.26.0

then run `python -m pytest tests/test_transformers_common.py` with that version installed, add a stand-in for any new
name the files import from transformers' test tree, and let `.ci/run` check both ends of setup.py's range.
"""

from pathlib import Path

import transformers
from packaging.version import Version


HERE = Path(__file__).resolve().parent
UNAVAILABLE = "transformers' common tests cannot run"


class CommonTestsUnavailable(Exception):
    """No vendored copy of the common tests fits the installed transformers."""


def vendored_versions() -> list[Version]:
    """The transformers releases whose common tests are vendored here, oldest first."""
    return sorted(Version(folder.name) for folder in HERE.iterdir() if (folder / "test_modeling_common.py").is_file())


def vendored_folder(installed: str = transformers.__version__) -> Path:
    """The folder of common tests for `installed`: its own, or the newest earlier patch release of its minor version."""
    installed_version = Version(installed)
    fitting = [
        version
        for version in vendored_versions()
        if version.release[:2] == installed_version.release[:2] and version <= installed_version
    ]
    if not fitting:
        raise CommonTestsUnavailable(
            f"{UNAVAILABLE}: transformers {installed} is installed, and mrm-hf vendors them for "
            f"{', '.join(map(str, vendored_versions()))} only. Vendor this version's with "
            f"`python tests/transformers_common/refresh.py {installed_version.base_version}`, or install one of those."
        )
    return HERE / str(fitting[-1])
