"""inference-hub: start vLLM without the LoRA adapters this node's model-cache volume lacks.

vLLM refuses to start when a --lora-modules entry cannot be loaded (init_static_loras raises), so
one adapter missing from a newly attached volume would take the whole coder down. Each entry whose
path is a directory on the volume and has no adapter_config.json is dropped with a line on stderr;
the rest, and every Hugging Face adapter, go to `vllm serve` unchanged.
"""

import json
import os
import sys


def kept_arguments(args):
    out = []
    i = 0
    while i < len(args):
        if args[i] != "--lora-modules":
            out.append(args[i])
            i += 1
            continue
        j = i + 1
        kept = []
        while j < len(args) and not args[j].startswith("--"):
            module = json.loads(args[j])
            path = module["path"]
            if path.startswith("/") and not os.path.isfile(os.path.join(path, "adapter_config.json")):
                print(
                    f"inference-hub: LoRA adapter {module['name']} is not on this node's model-cache volume ({path}); "
                    "serving without it. Copy it with `npm run hub -- finetune add`.",
                    file=sys.stderr,
                    flush=True,
                )
            else:
                kept.append(args[j])
            j += 1
        if kept:
            out += ["--lora-modules", *kept]
        i = j
    return out


if __name__ == "__main__":
    os.execvp("vllm", ["vllm", "serve", *kept_arguments(sys.argv[1:])])
