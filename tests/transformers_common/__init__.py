"""transformers' own common test mixins, vendored from the transformers 5.24.0 source distribution.

`tests/test_modeling_common.py`, `tests/test_configuration_common.py` and `tests/test_image_processing_common.py`
are byte-for-byte the files of `transformers-5.24.0.tar.gz` (Apache-2.0, see LICENSE here). The sdist ships only these
top-level test files, not the test tree they import from; the few names they import from it are small stand-ins
written for mrm-hf, each saying what it replaces:
- `tests/exporters/test_export.py` (`ExportTesterMixin`): a torch.export round trip of each model class;
- `tests/generation/test_utils.py` (`GenerationTesterMixin`): a marker class (MRM models do not generate);
- `tests/utils/test_configuration_utils.py` (`config_common_kwargs`): the common `PreTrainedConfig` arguments;
- `utils/fetch_hub_objects_for_ci.py` (`url_to_local_path`): skips the test, as its images are on the Hub.
The layout mirrors transformers' repository so that the vendored files' own imports resolve unchanged.

These copies are what our suite runs, whatever transformers is installed; `tests/test_transformers_common.py` runs
them against MRM. To refresh them for another transformers version:

    pip download --no-binary :all: --no-deps transformers==X.Y.Z -d /tmp/tf && tar xzf /tmp/tf/transformers-X.Y.Z.tar.gz -C /tmp/tf
    cp /tmp/tf/transformers-X.Y.Z/tests/test_{modeling,configuration,image_processing}_common.py tests/transformers_common/tests/
    cp /tmp/tf/transformers-X.Y.Z/LICENSE tests/transformers_common/LICENSE

then update `VENDORED_TRANSFORMERS_VERSION` below and `transformers` in setup.py, add any name the new files import
from the transformers test tree as a stand-in, and rerun `tests/test_transformers_common.py`.
"""

VENDORED_TRANSFORMERS_VERSION = "5.24.0"
