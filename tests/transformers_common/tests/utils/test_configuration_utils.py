# Stand-in for transformers' tests/utils/test_configuration_utils.py, which transformers' sdists do not ship (see
# ../../__init__.py). test_configuration_common.py's `check_config_arguments_init` builds a config from these
# arguments and checks that each is kept: every value differs from `PreTrainedConfig`'s default, so a config that
# drops one fails. They are the fields transformers 5's `PreTrainedConfig` dataclass declares (5.24 and 5.25
# alike), plus `output_attentions`, which it keeps as a property.

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "is_encoder_decoder": True,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
