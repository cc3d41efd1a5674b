"""Build a tiny random-weight Llama model, with its own tokenizer, for a real vLLM server.

Nothing is downloaded: a byte-level BPE tokenizer is trained on a few sentences and a
2-layer LlamaForCausalLM gets random (seeded) weights. The text it generates is noise;
it exists so that tests can talk to a real vLLM server on a CPU-only machine.

Usage: python make_tiny_model.py OUT_DIR
"""

import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SENTENCES = [
    "The gateway routes each request to the least busy server in the pool.",
    "A small model answers quickly, and its words mean nothing at all.",
    "Hello! How are you today? I am fine, thank you for asking.",
    "Streaming responses arrive as server-sent events, one chunk at a time.",
    "Numbers like 0 1 2 3 4 5 6 7 8 9 10 100 1000 appear in prompts too.",
    "user: what is the weather like? assistant: it is sunny and warm.",
    "system: you are a helpful assistant that answers in short sentences.",
]
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def build(out_dir: str) -> None:
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(SENTENCES * 4, trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        model_max_length=1024,
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64: smaller fails in vLLM's CPU attention
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)

    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    build(sys.argv[1])
