"""A byte-level BPE tokenizer trained locally, and the chat template of the tiny models.

The tiny preset downloads nothing, so its tokenizer is trained in a fraction of a second on the texts the
study will feed the model (catalog text plus the instruction pools). Byte-level BPE never produces an
unknown token, so any text round-trips.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from caig.errors import ConfigError

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, IMAGE_TOKEN)

# Vicuna-style turns (the paper's backbone is LLaVA-v1.6-Vicuna). Content may be a string or a list of
# {"type": "image"} / {"type": "text", "text": ...} parts; the template emits <s> itself, so templated text
# is tokenized with add_special_tokens=False. An assistant turn ends with </s>, the generation prompt is
# "ASSISTANT:" and an answer continues it after one space.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n' }}"
    "{% else %}"
    "{{ message['role'] | upper }}: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and wrap it for transformers.

    Special tokens: ``<pad>`` (id 0), ``<s>``, ``</s>``, ``<unk>`` and the ``<image>`` placeholder that
    LlavaNextProcessor expands into image-feature slots. ``vocab_size`` counts the 256 byte symbols and
    the special tokens, so it must exceed 261.
    """
    floor = len(pre_tokenizers.ByteLevel.alphabet()) + len(SPECIAL_TOKENS)
    if vocab_size <= floor:
        raise ConfigError(
            f"model.tokenizer.vocab_size={vocab_size} is too small (expected more than {floor})"
        )
    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((text for text in texts if text), trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped
