# The vendored files hold mixins, not tests of their own: pytest collects them only through
# tests/test_transformers_common.py.
collect_ignore_glob = ["[0-9]*", "tests/*", "utils/*", "refresh.py"]
