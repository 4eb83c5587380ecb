# test_configuration_common.py executes its own folder's __init__.py (transformers' direct_transformers_import):
# it must exist, and do nothing.
