"""Builds the built-in `tiny` model: a random-init Qwen2 with a locally trained byte-level BPE, fully from a seed.

Run as a subprocess (`python -m runner_agent.tiny_model --out DIR --seed N`): it imports torch and transformers,
which the agent's parent process never does. The caller owns caching and atomic placement of DIR.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

# Bump when anything below changes what gets built: the cache key includes it, so old builds are never reused.
RECIPE_VERSION = 1
DEFAULT_SEED = 1234

VOCAB_SIZE = 2048
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
DEFAULT_SYSTEM = "You are a helpful assistant."

# The Qwen2 ChatML template (the one `--template qwen` renders), with its default system prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Fixed phrases of the Chinese multiple-choice prompts (EvalScope's ceval/cmmlu templates and the answer line).
# They go into the tokenizer corpus so the prompt scaffolding becomes a few tokens instead of hundreds of bytes;
# no benchmark question text is ever used, so the model stays independent of any evaluation data.
_PHRASES = [
    "以下是中国关于",
    "的单项选择题，请选出其中的正确答案。",
    "回答下面的单项选择题，请选出其中的正确答案。",
    '你的回答的最后一行应该是这样的格式："答案：[LETTER]"（不带引号），其中 [LETTER] 是 A、B、C、D 中的一个。',
    "请在回答前进行一步步思考。",
    "问题：",
    "选项：",
    "答案：A",
    "答案：B",
    "答案：C",
    "答案：D",
    "A. ",
    "B. ",
    "C. ",
    "D. ",
    "A) ",
    "B) ",
    "C) ",
    "D) ",
    "____",
    "。",
    "，",
    "？",
    DEFAULT_SYSTEM,
]


def corpus(seed: int, lines: int = 20000) -> list[str]:
    """Deterministic training text: pseudo-words, numbers, random CJK characters and the fixed prompt phrases.

    Random pseudo-words matter: a repetitive corpus stops the BPE well short of its vocabulary size.
    """
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    out: list[str] = []
    for _ in range(lines):
        words: list[str] = []
        for _ in range(rng.randint(4, 12)):
            kind = rng.random()
            if kind < 0.55:
                words.append("".join(rng.choice(letters) for _ in range(rng.randint(1, 8))))
            elif kind < 0.7:
                words.append(str(rng.randint(0, 9999)))
            elif kind < 0.9:
                # Common CJK block, skewed towards its start so some characters recur often enough to merge.
                n = rng.randint(1, 6)
                words.append("".join(chr(0x4E00 + int(rng.paretovariate(1.2)) % 0x51A5) for _ in range(n)))
            else:
                words.append(rng.choice(_PHRASES))
        out.append(" ".join(words))
    return out


def build(out_dir: Path, seed: int) -> dict[str, object]:
    """Train the tokenizer, build the model and save both into `out_dir` (which must not exist yet)."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # Exactly Qwen2's normaliser and pre-tokenizer: AutoTokenizer loads a `qwen2` model's tokenizer as
    # Qwen2Tokenizer, which replaces the pre-tokenizer with this one; training with anything else gives other ids.
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(seed), trainer=trainer)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=32768,
    )
    fast.chat_template = CHAT_TEMPLATE

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=tok.token_to_id("<|endoftext|>"),
        eos_token_id=tok.token_to_id("<|im_end|>"),
        pad_token_id=tok.token_to_id("<|endoftext|>"),
        dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.do_sample = False

    out_dir.mkdir(parents=True)
    fast.save_pretrained(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    params = sum(p.numel() for p in model.parameters())
    info: dict[str, object] = {
        "recipe_version": RECIPE_VERSION, "seed": seed, "vocab_size": tok.get_vocab_size(), "parameters": params,
    }
    (out_dir / "tunebot_tiny.json").write_text(json.dumps(info, sort_keys=True) + "\n", encoding="utf-8")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner_agent.tiny_model", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="directory to create (must not exist)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    if args.out.exists():
        print(f"tiny_model: {args.out} already exists", file=sys.stderr)
        return 2
    info = build(args.out, args.seed)
    print(json.dumps(info, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
