"""Write a random-weight Llama in SmolLM2-135M's or SmolLM2-1.7B's shape, with SmolLM2's tokenizer.

Speed does not depend on the weights' values, so GPU measurements run on these where no model
hub can be reached. EOS almost never comes from random weights: every request runs to its
``max_tokens``. Usage::

    python benchmarks/make_random_llama.py OUT_DIR 135m|1.7b TOKENIZER_DIR [--device cuda]

TOKENIZER_DIR is a converted SmolLM2 folder (the built-in in Blaze's model cache); its
config.json gives the 135M shape.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

#: SmolLM2-1.7B differs from 135M in these fields (no grouped-query attention).
SHAPE_1_7B = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "num_hidden_layers": 24,
    "head_dim": 64,
}
TOKENIZER_FILES = ("chat_template.jinja", "tokenizer.json", "tokenizer_config.json", "generation_config.json")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("shape", choices=("135m", "1.7b"))
    parser.add_argument("tokenizer", type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    fields = json.loads((args.tokenizer / "config.json").read_text())
    for key in ("quantization_config", "_model_name_or_path", "transformers_version", "dtype"):
        fields.pop(key, None)
    if args.shape == "1.7b":
        fields.update(SHAPE_1_7B)
    torch.manual_seed(0)
    with torch.device(args.device):
        model = LlamaForCausalLM(LlamaConfig(**fields)).to(torch.bfloat16)
    print(f"{args.shape}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters", flush=True)
    model.save_pretrained(args.out)
    for name in TOKENIZER_FILES:
        if (args.tokenizer / name).exists():
            shutil.copy(args.tokenizer / name, args.out)


if __name__ == "__main__":
    main()
