# The vendored common test files of the installed transformers join this package, beside the stand-ins for the test
# tree they import from (see ../__init__.py): `transformers_common.tests.test_modeling_common` is
# `../<version>/test_modeling_common.py`, and its `from .generation.test_utils import ...` finds the stand-in here.
from .. import vendored_folder


__path__.insert(0, str(vendored_folder()))
