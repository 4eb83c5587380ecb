"""The MRM report tokenizer: the published WordPiece vocabulary (`mimic_wordpiece.json`) or one trained the same way.

The published code encodes `"[CLS] " + report`, truncates to 100 ids and pads with [PAD] = 0. Here a
`TemplateProcessing` post-processor adds [CLS], so `tokenizer(report, padding="max_length", truncation=True)` gives
the same ids, attention mask and (zero) token types with no string surgery. Special tokens written in a report
("[MASK]", "[CLS]") are matched as special tokens, exactly as in the published encoding; lowercase look-alikes such
as "[cls]" are ordinary text. A WordPiece decoder is added for readable `decode`; it does not change the ids.

The result is a plain `PreTrainedTokenizerFast`: `save_pretrained` / `AutoTokenizer.from_pretrained` need no MRM code.
"""

from collections.abc import Iterable
from os import PathLike
from pathlib import Path

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from tokenizers.trainers import WordPieceTrainer
from transformers import PreTrainedTokenizerFast


SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "mask_token": "[MASK]"}
"""The published special tokens, with ids 0, 1, 2, 3 in this order. There is no [SEP]."""

MAX_LENGTH = 100
"""The published `max_caption_length`, equal to the report encoder's position table."""


def _as_report_tokenizer(backend: Tokenizer, max_length: int) -> PreTrainedTokenizerFast:
    """Wrap a WordPiece backend with [CLS] prepended, right padding/truncation and the special tokens named."""
    cls_id = backend.token_to_id(SPECIAL_TOKENS["cls_token"])
    found = [backend.token_to_id(token) for token in SPECIAL_TOKENS.values()]
    if found != [0, 1, 2, 3]:
        raise ValueError(f"The vocabulary's special tokens: expected [PAD], [UNK], [CLS], [MASK] at ids 0, 1, 2, 3; "
                         f"found {found}.")
    backend.no_padding()
    backend.no_truncation()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0", pair="[CLS]:0 $A:0 $B:1", special_tokens=[("[CLS]", cls_id)]
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=max_length,
        padding_side="right",
        truncation_side="right",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        **SPECIAL_TOKENS,
    )


def load_published_tokenizer(path: str | PathLike, max_length: int = MAX_LENGTH) -> PreTrainedTokenizerFast:
    """Load the published `mimic_wordpiece.json` as a tokenizer that prepends [CLS] itself."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: expected a tokenizers JSON vocabulary; found no such file.")
    try:
        backend = Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for malformed or truncated files
        raise ValueError(
            f"{path}: expected a complete tokenizers JSON vocabulary (such as mimic_wordpiece.json); found a file that "
            f"does not parse: {error}"
        ) from error
    return _as_report_tokenizer(backend, max_length)


def _report_backend(model: WordPiece) -> Tokenizer:
    """A WordPiece backend with the published normalisation (lowercase, no accents) and word splitting."""
    backend = Tokenizer(model)
    backend.normalizer = normalizers.Sequence(
        [normalizers.Lowercase(), normalizers.NFKD(), normalizers.StripAccents()]
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=False)]
    )
    return backend


def _wordpiece(vocab: dict[str, int] | None = None) -> WordPiece:
    return WordPiece(
        vocab, unk_token=SPECIAL_TOKENS["unk_token"], continuing_subword_prefix="##", max_input_chars_per_word=100
    )


def train_report_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 30000,
    min_frequency: int = 0,
    max_length: int = MAX_LENGTH,
    limit_alphabet: int | None = None,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a WordPiece vocabulary with the published pipeline (and `WordPieceTrainer`'s own defaults).

    `tokenizers` breaks ties between equally frequent merges in hash order, so two trainings on the same texts can
    give different vocabularies (huggingface/tokenizers#1794): train once and reuse the saved tokenizer, or use
    `vocabulary_tokenizer` where the words are known in advance.
    """
    backend = _report_backend(_wordpiece())
    options = {} if limit_alphabet is None else {"limit_alphabet": limit_alphabet}
    trainer = WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        continuing_subword_prefix="##",
        show_progress=show_progress,
        **options,
    )
    counted = _Counted(texts)
    backend.train_from_iterator(counted, trainer=trainer)
    if backend.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise ValueError(
            f"train_report_tokenizer: expected reports with words to train a WordPiece vocabulary; found "
            f"{counted.total} reports ({counted.empty} empty or blank), which gave only the {len(SPECIAL_TOKENS)} "
            "special tokens."
        )
    return _as_report_tokenizer(backend, max_length)


def vocabulary_tokenizer(texts: Iterable[str], max_length: int = MAX_LENGTH) -> PreTrainedTokenizerFast:
    """A report tokenizer whose vocabulary is every word of `texts`, whole, then each of their characters alone and
    as a `##` continuation (so that other words still encode). Nothing is learned: the same texts always give the
    same ids, unlike `train_report_tokenizer`."""
    backend = _report_backend(_wordpiece())
    words = set()
    for text in texts:
        normalized = backend.normalizer.normalize_str(text)
        words.update(word for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalized))
    characters = sorted({character for word in words for character in word})
    tokens = [*SPECIAL_TOKENS.values(), *sorted(words), *(c for c in characters if c not in words)]
    tokens += [f"##{c}" for c in characters]
    backend.model = _wordpiece({token: index for index, token in enumerate(tokens)})
    return _as_report_tokenizer(backend, max_length)


class _Counted:
    """An iterable of texts that counts them, and the empty ones, as the trainer reads them; None is refused."""

    def __init__(self, texts: Iterable[str]):
        self.texts, self.total, self.empty = texts, 0, 0

    def __iter__(self):
        for text in self.texts:
            if not isinstance(text, str):
                raise TypeError(f"Report {self.total}: expected a report text as str; found {type(text).__name__}.")
            self.total += 1
            self.empty += not text.strip()
            yield text


__all__ = ["MAX_LENGTH", "SPECIAL_TOKENS", "load_published_tokenizer", "train_report_tokenizer", "vocabulary_tokenizer"]
