# Stand-in for transformers' tests/generation/test_utils.py, which transformers' sdists do not ship (see ../../__init__.py).
# test_modeling_common.py imports `GenerationTesterMixin` only to check that testers of models that cannot
# generate do not inherit it, so the marker class is all it needs; MRM's models do not generate.


class GenerationTesterMixin:
    """Marker for testers of models that generate; MRM's testers do not inherit it."""
